"""deploy/: the Kubernetes manifests and the Dockerfile agree with the schemas and the server.

No cluster: every manifest is checked against the Kubernetes OpenAPI schemas offline
(kubernetes-validate, strict), then against the real server: its flag parser, health names,
metric names and drain grace. The overlays are rendered with `kubectl kustomize` where kubectl
is installed. Last, the server runs as the pod would (the Deployment's capabilities, no_new_privs,
a read-only root with a writable /tmp) to show that those privileges are enough for the sandbox.
"""

from __future__ import annotations

import argparse
import ctypes.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml

from tilefn.client import Client, UdfTimeoutError
from tilefn.client._channel import SERVICE_CONFIG
from tilefn.sandbox._in_filesystem import SCRATCH_OPTIONS
from tilefn.sandbox._in_seccomp import DENIED
from tilefn.server._app import HEALTH_NAMES
from tilefn.server._config import ServerConfig, add_arguments, from_arguments
from tilefn.server._metrics import Metrics

from conftest import READY_LINE, ServerProcess

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
OVERLAYS = ("unprivileged", "strict")
#: A recent release the pinned kubernetes-validate bundles schemas for.
KUBERNETES_VERSION = "1.35.0"
#: Read by the PostgreSQL store itself, not a flag: the one TILEFN_ variable outside the parser.
STORE_PASSWORD_ENV = "TILEFN_STORE_PASSWORD"
#: What the sandbox needs in the pod (docs/DEPLOY.md): namespaces and mounts, per-slot uids,
#: emptying the workers' bounding set, and SIGKILL for workers of other uids.
SANDBOX_CAPABILITIES = {"SYS_ADMIN", "SETUID", "SETGID", "SETPCAP", "KILL"}
#: What the server, its template and a worker setting itself up call: a seccomp profile that
#: refused one of these would silently cost a sandbox layer (or the worker kill).
SANDBOX_SYSCALLS = {"unshare", "mount", "umount2", "pivot_root", "sethostname", "setresuid",
                    "setgroups", "capset", "prctl", "seccomp", "pidfd_open", "pidfd_send_signal",
                    "execve", "clone", "kill", "memfd_create"}  # fmt: skip
#: Egress the pods may have: DNS, PostgreSQL, HTTPS to the object store.
ALLOWED_EGRESS = {(53, "UDP"), (53, "TCP"), (5432, "TCP"), (443, "TCP")}
GIB = 1 << 30
MIB = 1 << 20
CLONE_NEWUSER = 0x10000000


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def base_documents() -> list[dict[str, Any]]:
    """The manifests base/kustomization.yaml lists, as written."""
    kustomization = yaml.safe_load((KUBE / "base" / "kustomization.yaml").read_text())
    return [
        doc for name in kustomization["resources"] for doc in load_documents(KUBE / "base" / name)
    ]


def kustomize(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (server,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return server  # type: ignore[no-any-return]


def pod_labels(docs: list[dict[str, Any]]) -> dict[str, str]:
    return one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]  # type: ignore[no-any-return]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def parser() -> argparse.ArgumentParser:
    """The server's own parser (server/__main__.py builds it the same way), erroring by raising."""
    built = argparse.ArgumentParser(prog="tilefn serve", exit_on_error=False)
    add_arguments(built)
    return built


@dataclass
class PodServer:
    """What the Deployment's container would run: its config, and its plain environment."""

    config: ServerConfig
    env: dict[str, str] = field(default_factory=dict)


def pod_server(docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> PodServer:
    """Parse the container's args with the ConfigMap's and its own env, as the server would."""
    spec = container(docs)
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        env.update(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    env.update({e["name"]: e["value"] for e in spec.get("env", []) if "value" in e})
    for name in [n for n in os.environ if n.startswith("TILEFN_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return PodServer(from_arguments(parser().parse_args(spec.get("args", []))), env)


def every_manifest() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(KUBE.rglob("*.yaml")):
        if path.name != "kustomization.yaml":
            for doc in load_documents(path):
                yield str(path.relative_to(ROOT)), doc


# --- schemas ---


@pytest.mark.parametrize(("path", "doc"), list(every_manifest()), ids=lambda v: str(v)[:60])
def test_manifest_matches_the_kubernetes_schema(path: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_validation_catches_a_misspelt_field() -> None:
    deployment = json.loads(json.dumps(one(base_documents(), "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessprobe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", [".", *(f"overlays/{o}" for o in OVERLAYS)])
def test_kustomize_renders_valid_manifests(overlay: str) -> None:
    docs = kustomize(KUBE / overlay)
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "tilefn"
    kustomization = yaml.safe_load((KUBE / "base" / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    assert container(docs)["image"] == f"{image['newName']}:{image['newTag']}"
    assert len(docs) == len(base_documents())


# --- the server's flags, probes and drain ---


def test_every_setting_is_a_real_server_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server ignores unknown TILEFN_ variables: a misspelt one would silently do nothing."""
    known = {a.dest.upper() for a in parser()._actions if a.dest != "help"}
    server = pod_server(base_documents(), monkeypatch)
    unknown = {n for n in server.env if n.startswith("TILEFN_")} - {f"TILEFN_{k}" for k in known}
    assert not unknown
    secret_env = {e["name"] for e in container(base_documents())["env"] if "valueFrom" in e}
    assert STORE_PASSWORD_ENV in secret_env


def test_the_server_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    config = pod_server(base_documents(), monkeypatch).config
    assert (config.host, config.metrics_host) == ("0.0.0.0", "0.0.0.0")
    assert config.plaintext and config.auth and config.metrics_port > 0
    assert config.pool.sandbox == "degraded"
    store = urlparse(config.store)
    assert store.scheme == "postgresql" and store.password is None  # the password: a Secret
    mounts = [m["mountPath"] for m in container(base_documents())["volumeMounts"]]
    assert any(Path(config.results_dir).is_relative_to(m) for m in mounts if m != "/tmp")


def test_probes_ask_grpc_health_on_the_grpc_port(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = container(base_documents())
    config = pod_server(base_documents(), monkeypatch).config
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert ports == {"grpc": config.port, "metrics": config.metrics_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        grpc = spec[probe]["grpc"]
        assert grpc["port"] == config.port
        assert grpc.get("service", "") in HEALTH_NAMES  # a name the server reports on


def test_termination_grace_outlasts_prestop_and_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = base_documents()
    config = pod_server(docs, monkeypatch).config
    assert any(a.startswith("--drain-grace") for a in container(docs)["args"])
    pre_stop = container(docs)["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = one(docs, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > pre_stop + config.drain_grace
    # Rolling updates never drop below the desired count.
    assert one(docs, "Deployment")["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_resources_fit_the_worker_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = base_documents()
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    for spec in pod["containers"] + pod.get("initContainers", []):
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= spec["resources"][kind].keys(), spec["name"]
    pool = pod_server(docs, monkeypatch).config.pool
    limit = container(docs)["resources"]["limits"]["memory"]
    assert limit.endswith("Gi")
    # docs/DEPLOY.md, "Sizing": busy workers' address space, every worker's /tmp tmpfs, and
    # 256 MiB for the server and the template.
    scratch = re.search(rb"size=(\d+)m", SCRATCH_OPTIONS)
    assert scratch
    workers = pool.max_workers + pool.ready_workers
    need = pool.max_workers * pool.worker_memory_bytes + workers * int(scratch.group(1)) * MIB
    assert int(limit[:-2]) * GIB >= need + 256 * MIB


# --- security context ---


def test_base_grants_only_what_the_sandbox_needs() -> None:
    docs = base_documents()
    context = container(docs)["securityContext"]
    assert context["capabilities"]["drop"] == ["ALL"]
    assert set(context["capabilities"]["add"]) == SANDBOX_CAPABILITIES
    assert context["allowPrivilegeEscalation"] is False
    assert context["privileged"] is False and context["readOnlyRootFilesystem"] is True
    # Added capabilities stay effective only for uid 0 (Kubernetes has no ambient capabilities).
    assert context["runAsUser"] == 0 and context["runAsNonRoot"] is False
    assert context["seccompProfile"]["type"] == "Localhost"
    assert seccomp_profile(context)  # the file nodes install: deploy/kubernetes/seccomp/
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    tmp = [m for m in container(docs)["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert tmp, "the worker template makes its mount points in /tmp: it must be writable"


def seccomp_path(context: dict[str, Any]) -> Path:
    """The Localhost profile a security context names, in deploy/kubernetes/seccomp/."""
    return KUBE / "seccomp" / Path(context["seccompProfile"]["localhostProfile"]).name


def seccomp_profile(context: dict[str, Any]) -> dict[str, Any]:
    return json.loads(seccomp_path(context).read_text())  # type: ignore[no-any-return]


def test_seccomp_profile_refuses_only_what_the_sandbox_never_calls() -> None:
    profile = seccomp_profile(container(base_documents())["securityContext"])
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert profile["architectures"] == ["SCMP_ARCH_X86_64"]  # no x32/i386 entry points
    plain = [r for r in profile["syscalls"] if not r.get("args")]
    refused = {n for r in plain for n in r["names"] if r["action"] == "SCMP_ACT_ERRNO"}
    # Every name is one the workers' own filter refuses too (real syscalls, known numbers).
    assert refused <= set(DENIED) | {"clone3"}
    assert not refused & SANDBOX_SYSCALLS
    (conditional,) = [r for r in profile["syscalls"] if r.get("args")]
    assert set(conditional["names"]) == {"unshare", "clone"}  # only with CLONE_NEWUSER
    assert conditional["args"] == [
        {"index": 0, "value": CLONE_NEWUSER, "valueTwo": CLONE_NEWUSER, "op": "SCMP_CMP_MASKED_EQ"}
    ]


def test_unprivileged_overlay_runs_as_non_root(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = kustomize(KUBE / "overlays" / "unprivileged")
    context = container(docs)["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] != 0
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] and pod["securityContext"]["fsGroup"] == context["runAsGroup"]
    assert pod_server(docs, monkeypatch).config.pool.sandbox == "degraded"
    labels = one(docs, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_strict_overlay_is_privileged_and_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = kustomize(KUBE / "overlays" / "strict")
    context = container(docs)["securityContext"]
    assert context["privileged"] is True and context["allowPrivilegeEscalation"] is True
    assert pod_server(docs, monkeypatch).config.pool.sandbox == "strict"
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["nodeSelector"]


def test_secrets_are_placeholders_and_every_reference_resolves() -> None:
    docs = base_documents()
    secrets = {d["metadata"]["name"]: d["stringData"] for d in docs if d["kind"] == "Secret"}
    assert all(v == "REPLACE-ME" for data in secrets.values() for v in data.values())
    assert "NOT A REAL SECRET" in (KUBE / "base" / "secret.yaml").read_text()
    for entry in container(docs)["env"]:
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["key"] in secrets[ref["name"]]
            assert ref["name"] != "tilefn-client-token"  # clients' tokens stay out of the server
    for value in one(docs, "ConfigMap")["data"].values():
        assert "REPLACE-ME" in value or "@" not in value or urlparse(value).password is None


# --- services, autoscaling, disruption, network ---


def test_headless_service_selects_the_grpc_port() -> None:
    docs = base_documents()
    headless = one(docs, "Service", "tilefn-headless")["spec"]
    assert headless["clusterIP"] == "None" and not headless["publishNotReadyAddresses"]
    assert selects(headless["selector"], pod_labels(docs))
    (port,) = headless["ports"]
    assert port["targetPort"] == "grpc" and port["port"] == 50051
    metrics = one(docs, "Service", "tilefn-metrics")["spec"]
    assert selects(metrics["selector"], pod_labels(docs))
    assert [p["targetPort"] for p in metrics["ports"]] == ["metrics"]
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    assert annotations["prometheus.io/port"] == str(ports["metrics"])


def test_documented_client_config_balances_and_calls(server: ServerProcess) -> None:
    """docs/DEPLOY.md's service config is one gRPC accepts, and calls go through it."""
    text = (ROOT / "docs" / "DEPLOY.md").read_text()
    (config,) = re.findall(r"```json\n(.*?)```", text, re.S)
    assert json.loads(config) == json.loads(SERVICE_CONFIG)  # what the Python client uses
    headless = one(base_documents(), "Service", "tilefn-headless")
    target = f"dns:///{headless['metadata']['name']}.tilefn.svc.cluster.local:50051"
    assert target in text
    host, port = server.address.rsplit(":", 1)
    options = [("grpc.service_config", config), ("grpc.max_receive_message_length", 16 << 20)]
    with Client(f"dns:///{host}:{port}", channel_options=options) as client:
        assert [client.call(lambda n: n * 2, n) for n in range(3)] == [0, 2, 4]


def metric_names() -> set[str]:
    return {family.name for family in Metrics().registry.collect()}


def test_hpa_scales_the_deployment_on_a_real_metric() -> None:
    docs = base_documents()
    hpa = one(docs, "HorizontalPodAutoscaler")["spec"]
    deployment = one(docs, "Deployment")
    target = hpa["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
    assert target["name"] == deployment["metadata"]["name"]
    kinds = {m["type"]: m for m in hpa["metrics"]}
    assert kinds["Resource"]["resource"]["name"] == "cpu"  # the fallback
    name = kinds["Pods"]["pods"]["metric"]["name"]
    assert name in metric_names()
    (adapter,) = load_documents(KUBE / "monitoring" / "prometheus-adapter-rules.yaml")
    (rule,) = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    assert rule["name"]["as"] == name
    series = re.match(r"'?(\w+)\{", rule["seriesQuery"])
    assert series and series.group(1) in metric_names()
    assert hpa["minReplicas"] >= 2


def test_disruption_budget_matches_the_pods() -> None:
    docs = base_documents()
    pdb = one(docs, "PodDisruptionBudget")["spec"]
    assert selects(pdb["selector"]["matchLabels"], pod_labels(docs))
    assert pdb["maxUnavailable"] < one(docs, "HorizontalPodAutoscaler")["spec"]["minReplicas"]


def test_network_policy_allows_storage_only(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = base_documents()
    policy = one(docs, "NetworkPolicy")["spec"]
    assert selects(policy["podSelector"]["matchLabels"], pod_labels(docs))
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    egress = [(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]]
    assert all(rule.get("ports") for rule in policy["egress"]), "a rule without ports allows all"
    assert set(egress) == ALLOWED_EGRESS
    config = pod_server(docs, monkeypatch).config
    assert (urlparse(config.store).port, "TCP") in egress
    blocks = [p["ipBlock"] for r in policy["egress"] for p in r["to"] if "ipBlock" in p]
    assert all("169.254.0.0/16" in b.get("except", []) for b in blocks)  # no metadata service
    ingress = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert ingress == {config.port, config.metrics_port}


# --- the image ---


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_dockerfile_copies_what_the_package_is_built_from() -> None:
    copied = set()
    for instruction, args in dockerfile():
        if instruction == "COPY" and not args.startswith("--from"):
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                copied.add(source)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    assert needed | {"pyproject.toml", "constraints.txt", pyproject["project"]["readme"]} <= copied
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert not copied & set(ignored)


def test_dockerfile_runs_the_server_with_real_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = dockerfile()
    images = {args.split()[0] for instruction, args in steps if instruction == "FROM"}
    (image,) = images  # build and runtime stages share the interpreter the venv points at
    version = tuple(int(p) for p in re.search(r":(\d+)\.(\d+)", image).groups())  # type: ignore[union-attr]
    floor = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert version >= tuple(int(p) for p in floor.lstrip(">=").split("."))
    (entrypoint,) = [json.loads(a) for i, a in steps if i == "ENTRYPOINT"]
    assert entrypoint[-2:] == ["-m", "tilefn.server"] and "tini" in entrypoint[0]
    (cmd,) = [json.loads(a) for i, a in steps if i == "CMD"]
    for name in [n for n in os.environ if n.startswith("TILEFN_")]:
        monkeypatch.delenv(name)
    config = from_arguments(parser().parse_args(cmd))
    assert config.host == "0.0.0.0" and config.plaintext
    exposed = {int(p) for i, a in steps if i == "EXPOSE" for p in a.split()}
    assert exposed == {config.port, config.metrics_port}


# --- the pod's privileges are enough for the sandbox ---

#: Inside a private mount namespace: a fresh /tmp (the pod's emptyDir), every other mount
#: read-only (readOnlyRootFilesystem), then the server with the container's privileges.
POD_SCRIPT = r"""
set -e
mount --make-rprivate /
mount -t tmpfs -o size=256m,mode=1777 tmpfs /tmp
for m in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do
  case "$m" in /proc*|/sys*|/dev*|/tmp*) continue;; esac
  mount -o remount,bind,ro "$m" 2>/dev/null || true
done
if touch "$REPO/.rw-probe" 2>/dev/null; then echo "root still writable" >&2; exit 97; fi
exec setpriv --no-new-privs $USER_FLAGS --bounding-set "$CAPS" --inh-caps -all -- $SECCOMP "$@"
"""


def can_emulate_a_pod() -> str:
    """Why this machine cannot run the server as the pod would, or ""."""
    if os.geteuid() != 0 or not (shutil.which("setpriv") and shutil.which("unshare")):
        return "needs root, setpriv and unshare"
    if ctypes.util.find_library("seccomp") is None:
        return "needs libseccomp to load the pod's seccomp profile"
    if any(Path(p).resolve().is_relative_to("/tmp") for p in (ROOT, sys.prefix)):
        return "the checkout or virtualenv is under /tmp, which the pod's emptyDir hides"
    return ""


def other_users_can_run_python() -> bool:
    """Whether a non-root uid can reach the interpreter (a pyenv under /root cannot)."""
    real = Path(sys.executable).resolve()
    return all(p.stat().st_mode & 0o001 for p in (real, *real.parents))


@dataclass
class PodProcess:
    process: subprocess.Popen[str]
    address: str
    log: Path

    def stop(self) -> str:
        self.process.terminate()
        self.process.wait(30)
        return self.log.read_text()


def run_as_pod(tmp_path: Path, context: dict[str, Any]) -> PodProcess:
    caps = ",".join(["-all", *(f"+{c.lower()}" for c in context["capabilities"].get("add", []))])
    uid = context["runAsUser"]
    users = f"--reuid {uid} --regid {context['runAsGroup']} --clear-groups" if uid else ""
    flags = ["--host", "127.0.0.1", "--port", "0", "--no-auth", "--drain-grace", "2"]
    flags += ["--store", "/tmp/state/tilefn.sqlite3", "--data-root", "/tmp/data"]
    flags += ["--sandbox", "degraded", "--max-tasks-per-worker", "1", "--max-workers", "2"]
    server = [sys.executable, "-m", "tilefn.server", *flags]
    log = tmp_path / "pod-server.log"
    seccomp = ""  # RuntimeDefault is the runtime's own profile: not reproduced here
    if context.get("seccompProfile", {}).get("type") == "Localhost":
        seccomp = f"{sys.executable} {ROOT / 'tests' / 'pod_seccomp.py'} {seccomp_path(context)}"
    env = {**os.environ, "REPO": str(ROOT), "CAPS": caps, "USER_FLAGS": users, "SECCOMP": seccomp}
    process = subprocess.Popen(
        ["unshare", "--mount", "sh", "-c", POD_SCRIPT, "pod", *server],
        stdout=subprocess.PIPE, stderr=log.open("wb"), text=True, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(READY_LINE):
        process.kill()
        process.wait()
        raise AssertionError(f"server did not start ({shlex.join(server)}): {log.read_text()}")
    return PodProcess(process, line[len(READY_LINE) :].strip(), log)


def sandbox_report(address: str) -> tuple[set[str], set[str]]:
    """The active and unavailable layers, after a call and a call killed at its timeout."""
    client = Client(address)
    assert client.exec(lambda n: n * 2, 21) == 42
    with pytest.raises(UdfTimeoutError):
        client.with_options(timeout=1).exec(lambda: __import__("time").sleep(60))
    assert client.exec(lambda n: n + 1, 1) == 2
    sandbox = client.server_info()["sandbox"]
    return set(sandbox["active_layers"]), set(sandbox.get("unavailable_layers", []))


@pytest.mark.skipif(bool(can_emulate_a_pod()), reason=can_emulate_a_pod() or "-")
def test_base_privileges_give_every_layer_but_cgroups(tmp_path: Path) -> None:
    pod = run_as_pod(tmp_path, container(base_documents())["securityContext"])
    try:
        active, unavailable = sandbox_report(pod.address)
    finally:
        log = pod.stop()
    # cgroups need a writable cgroup v1 hierarchy (overlays/strict); Landlock is optional.
    assert unavailable <= {"cgroups", "landlock"}, log
    assert {"pid_namespace", "filesystem", "distinct_uid", "capabilities_dropped"} <= active
    assert "Operation not permitted" not in log  # killing a worker of another uid needs KILL


@pytest.mark.skipif(bool(can_emulate_a_pod()), reason=can_emulate_a_pod() or "-")
@pytest.mark.skipif(not other_users_can_run_python(), reason="uid 10001 cannot run this Python")
def test_unprivileged_overlay_still_serves(tmp_path: Path) -> None:
    context = container(kustomize(KUBE / "overlays" / "unprivileged"))["securityContext"]
    pod = run_as_pod(tmp_path, context)
    try:
        active, _ = sandbox_report(pod.address)
    finally:
        log = pod.stop()
    assert {"rlimits", "no_new_privs", "seccomp"} <= active, log
    assert "distinct_uid" not in active  # the outer boundary (gVisor) has to make up for it
