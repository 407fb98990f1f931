"""``python -m loadtest``: drive a tilefn server at a constant rate, then find where it saturates.

    python -m loadtest --target 127.0.0.1:50051 --rate 50 --duration 20 --saturate

See docs/PERFORMANCE.md, "Load test".
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from tilefn.client._channel import CA_ENV, CERT_ENV, KEY_ENV

from ._config import (
    DEFAULT_MIX,
    LoadConfig,
    PhaseConfig,
    SaturationConfig,
    TargetConfig,
    WorkloadConfig,
    parse_mix,
    parse_ranges,
    parse_size,
)
from ._progress import Progress
from ._report import REPORT_VERSION, settings, write
from ._runner import LiveCounters, PhaseResult, run_phase
from ._saturate import PhaseRunner, search
from ._stats import summarize
from ._target import Target, TargetUnreachableError
from ._workloads import Workload, build_workloads

CONNECT_TIMEOUT = 10.0
TOKEN_ENV = "TILEFN_TOKEN"
T = TypeVar("T")


def _env_path(env: str) -> Callable[[str], Path | None]:
    """A path flag whose empty value falls back to the environment variable ``env``."""

    def path(text: str) -> Path | None:
        text = text or os.environ.get(env, "")
        return Path(text) if text else None

    return path


def _flag(parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse`` for argparse: its ValueError message becomes the usage error."""

    def flag(text: str) -> T:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    flag.__name__ = parse.__name__.removeprefix("parse_")
    return flag


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest",
        description="Open-model load test of a tilefn server, with a saturation search.",
    )
    _target_arguments(parser)
    _load_arguments(parser)
    _saturation_arguments(parser)
    output = parser.add_argument_group("output")
    output.add_argument("--out", type=Path, default=Path("loadtest/out"), help="report folder")
    output.add_argument("--no-progress", action="store_true", help="no live progress line")
    return parser


def _target_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("target")
    target.add_argument("--target", default="127.0.0.1:50051", help="gRPC target (%(default)s)")
    target.add_argument("--tls", action="store_true", help="connect with TLS")
    target.add_argument(
        "--tls-ca",
        "--ca-cert",
        dest="ca_cert",
        type=_env_path(CA_ENV),
        default=_env_path(CA_ENV)(""),
        help=f"PEM CA bundle to trust (env {CA_ENV}; implies --tls)",
    )
    target.add_argument("--tls-server-name", default="", help="certificate name to verify")
    for flag, env, what in (("cert", CERT_ENV, "client certificate"), ("key", KEY_ENV, "its key")):
        target.add_argument(
            f"--tls-{flag}", type=Path, help=f"PEM {what}, for mutual TLS (env {env} with TLS)"
        )
    target.add_argument(
        "--token", default=os.environ.get(TOKEN_ENV, ""), help=f"bearer token (env {TOKEN_ENV})"
    )
    target.add_argument("--lb-policy", default="", help='e.g. "round_robin" for several hosts')


def _load_arguments(parser: argparse.ArgumentParser) -> None:
    load = parser.add_argument_group("load")
    load.add_argument("--rate", type=float, default=50.0, help="requests/s (%(default)s)")
    load.add_argument("--duration", type=float, default=20.0, help="seconds; 0: no run")
    load.add_argument(
        "--mix", type=_flag(parse_mix), default=parse_mix(DEFAULT_MIX), help=DEFAULT_MIX
    )
    load.add_argument("--concurrency", type=int, default=256, help="max in flight (%(default)s)")
    load.add_argument("--timeout", type=float, default=10.0, help="per-request deadline, s")
    load.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds first")
    work = parser.add_argument_group("workloads")
    work.add_argument("--array", default=WorkloadConfig.array, help="array workload's array")
    work.add_argument(
        "--array-ranges",
        type=_flag(parse_ranges),
        default=WorkloadConfig.array_ranges,
        help="JSON, one entry per dimension (default [[0, 89], null])",
    )
    work.add_argument(
        "--large-bytes",
        type=_flag(parse_size),
        default=WorkloadConfig.large_bytes,
        help="large workload's result size (default 4MiB)",
    )


def _saturation_arguments(parser: argparse.ArgumentParser) -> None:
    default = SaturationConfig()
    group = parser.add_argument_group("saturation search")
    group.add_argument("--saturate", action="store_true", help="step the rate until it breaks")
    group.add_argument("--start-rate", type=float, default=default.start_rate, help="req/s")
    group.add_argument("--step-factor", type=float, default=default.factor, help="x per step")
    group.add_argument("--step-duration", type=float, default=default.step_duration, help="s")
    group.add_argument("--max-rate", type=float, default=default.max_rate, help="req/s")
    group.add_argument("--p99-ms", type=float, default=default.p99_ms, help="p99 limit, ms")
    group.add_argument(
        "--max-error-rate",
        type=float,
        default=default.error_rate,
        help="limit on the share of unexpected outcomes (0.01 = 1%%)",
    )
    group.add_argument("--settle", type=float, default=default.settle, help="s between steps")
    group.add_argument(
        "--retries",
        type=int,
        default=default.retries,
        help="re-runs of a breaking step before it counts (%(default)s)",
    )


def config_from(options: argparse.Namespace) -> LoadConfig:
    """The LoadConfig the flags describe (already validated)."""
    cert, key = options.tls_cert, options.tls_key
    tls = options.tls or any(x is not None for x in (options.ca_cert, cert, key))
    if tls and cert is None and key is None:  # as the client does: env identity only with TLS
        cert, key = _env_path(CERT_ENV)(""), _env_path(KEY_ENV)("")
    target = TargetConfig(
        address=options.target,
        tls=tls,
        ca_cert=options.ca_cert,
        tls_server_name=options.tls_server_name,
        client_cert=cert,
        client_key=key,
        token=options.token,
        lb_policy=options.lb_policy,
    )
    workloads = WorkloadConfig(options.array, options.array_ranges, options.large_bytes)
    run = PhaseConfig(
        options.rate, options.duration, options.mix, options.concurrency, options.timeout
    )
    saturation = None
    if options.saturate:
        saturation = SaturationConfig(
            options.start_rate,
            options.step_factor,
            options.step_duration,
            options.max_rate,
            options.p99_ms,
            options.max_error_rate,
            options.settle,
            options.retries,
        )
    return LoadConfig(
        target, workloads, run, saturation, options.warmup, options.out, not options.no_progress
    )


def problems(config: LoadConfig) -> list[str]:
    """What is wrong with a configuration, in flag terms."""
    run, found = config.run, []
    if run.rate <= 0 or run.duration < 0 or run.concurrency < 1 or run.timeout <= 0:
        found.append("--rate, --concurrency and --timeout must be positive, --duration >= 0")
    if run.duration > 0 and run.rate * run.duration < 1:
        found.append("--rate x --duration must make at least one request")
    found += _target_problems(config.target)
    if run.duration == 0 and config.saturation is None:
        found.append("nothing to do: give --duration > 0 or --saturate")
    if (sat := config.saturation) is not None:
        if sat.factor <= 1 or sat.start_rate <= 0 or sat.start_rate > sat.max_rate:
            found.append("need --step-factor > 1 and 0 < --start-rate <= --max-rate")
        if sat.retries < 0:
            found.append("--retries must be >= 0")
        if sat.start_rate * sat.step_duration < 1:
            found.append("--start-rate x --step-duration must make at least one request")
    return found


def _target_problems(target: TargetConfig) -> list[str]:
    found = []
    files = (("ca", target.ca_cert), ("cert", target.client_cert), ("key", target.client_key))
    for flag, path in files:
        if path is not None and not path.is_file():
            found.append(f"--tls-{flag} {path}: no such file")
    if (target.client_cert is None) != (target.client_key is None):
        found.append("--tls-cert and --tls-key go together")
    if target.tls_server_name and not target.tls:
        found.append("--tls-server-name needs --tls")
    return found


def _phase_runner(target: Target, workloads: Mapping[str, Workload], progress: bool) -> PhaseRunner:
    async def run(config: PhaseConfig, label: str) -> PhaseResult:
        live = LiveCounters()
        if not progress:
            return await run_phase(target, workloads, config, live)
        async with Progress(live, label):
            return await run_phase(target, workloads, config, live)

    return run


async def measure(config: LoadConfig) -> tuple[dict[str, Any], PhaseResult | None]:
    """Warm up, run, search; return the report and the run's samples (for the chart)."""
    workloads = build_workloads(config.workloads)
    report: dict[str, Any] = {
        "tilefn_loadtest": REPORT_VERSION,
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": settings(config),
    }
    run: PhaseResult | None = None
    async with Target(config.target) as target:
        await target.wait_ready(CONNECT_TIMEOUT)
        report["server"] = await target.server_info()
        runner = _phase_runner(target, workloads, config.progress)
        if config.warmup > 0:
            await runner(replace(config.run, duration=config.warmup), "warm-up")
        if config.run.duration > 0:
            run = await runner(config.run, f"run {config.run.rate:g}/s")
            report["run"] = summarize(run)
        if config.saturation is not None:
            report["saturation"] = await search(runner, config.run, config.saturation)
    return report, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    config = config_from(parser.parse_args(argv))
    if errors := problems(config):
        parser.error("; ".join(errors))
    try:
        report, run = asyncio.run(measure(config))
    except TargetUnreachableError as error:
        print(f"loadtest: {error} (start one with `make run`, or give --target)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nloadtest: interrupted; no report written", file=sys.stderr)
        return 130
    paths = write(config.out, report, run)
    print((config.out / "report.md").read_text())
    print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
