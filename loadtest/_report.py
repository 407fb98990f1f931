"""The report: report.json (everything), report.md (for people), latency.html (the charts)."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import _plot
from ._config import LoadConfig
from ._runner import PhaseResult

REPORT_VERSION = 1
_LEFT_ALIGNED = ("", "workload", "errors by code", "verdict")
STEP_COLUMNS = (
    "rate",
    "achieved",
    "p50",
    "p99",
    "p99.9",
    "max",
    "unexpected",
    "client lag p99",
    "client CPU",
    "verdict",
)
PERCENTILE_COLUMNS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p99_9"))


def settings(config: LoadConfig) -> dict[str, Any]:
    """The configuration as JSON: the token only as whether one was sent."""
    target = asdict(config.target)
    target["token"] = bool(config.target.token)
    for name in ("ca_cert", "client_cert", "client_key"):
        path = getattr(config.target, name)
        target[name] = str(path) if path else None
    return {
        "target": target,
        "workloads": asdict(config.workloads),
        "run": asdict(config.run),
        "saturation": asdict(config.saturation) if config.saturation else None,
        "warmup_s": config.warmup,
    }


def write(out: Path, report: Mapping[str, Any], run: PhaseResult | None) -> list[Path]:
    """Write report.json, report.md and latency.html into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md", out / "latency.html"]
    paths[0].write_text(json.dumps(_jsonable(report), indent=2) + "\n")
    text = markdown(report)
    paths[1].write_text(text)
    paths[2].write_text(html_page(report, run, text))
    return paths


def _jsonable(value: Any) -> Any:
    """nan (a percentile of nothing) becomes null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def html_page(report: Mapping[str, Any], run: PhaseResult | None, text: str) -> str:
    """The charts, under the text report."""
    sections = []
    if run is not None and report.get("run"):
        chart = _plot.run_chart(run, report["run"]["timeline"])
        sections.append(("Latency over time (constant-rate run)", chart))
    if report.get("saturation") and report["saturation"]["steps"]:
        sections.append(("Saturation search", _plot.saturation_chart(report["saturation"])))
    summary = f"<pre>{html.escape(text)}</pre>"
    return _plot.page("tilefn load test", sections, summary)


def markdown(report: Mapping[str, Any]) -> str:
    """The report for people."""
    lines = ["# tilefn load test", "", *_header(report), ""]
    if report.get("run"):
        lines += _run_section(report["run"])
    if report.get("saturation"):
        lines += _saturation_section(report["saturation"])
    lines.append("Charts: latency.html; every number: report.json.")
    return "\n".join(lines) + "\n"


def _header(report: Mapping[str, Any]) -> list[str]:
    target = report["settings"]["target"]
    security = "TLS" if target["tls"] else "plaintext"
    if target.get("client_cert"):
        security = "mutual TLS"
    security += ", bearer token sent" if target["token"] else ", no token"
    server = report.get("server") or {}
    about = "server did not answer GetServerInfo"
    if server:
        sandbox = server.get("sandbox", {}).get("mode", "?")
        about = f"tilefn {server.get('version', '?')}, Python {server.get('python_version', '?')}"
        about += f", sandbox {sandbox}"
    phase = report["settings"]["run"]
    mix = ", ".join(f"{k}={v}" for k, v in phase["mix"].items())
    return [
        f"- target: `{target['address']}` ({security}); {about}",
        f"- started: {report['started_at']}",
        f"- mix: {mix}; concurrency cap {phase['concurrency']}; timeout {phase['timeout']:g} s;"
        f" warm-up {report['settings']['warmup_s']:g} s",
    ]


def _run_section(run: Mapping[str, Any]) -> list[str]:
    rate, duration = run["offered_rate"], run["duration_s"]
    counts = _table(
        ["sent", "completed", "errors", "unexpected", "achieved rate", "goodput", "received"],
        [
            [
                run["sent"],
                run["completed"],
                run["errors"],
                run["unexpected"],
                f"{run['achieved_rate']:g} req/s",
                f"{run['goodput']:g} req/s",
                f"{run['received_mib']:g} MiB",
            ]
        ],
    )
    return [
        f"## Constant rate: {rate:g} req/s for {duration:g} s",
        "",
        *counts,
        "",
        "Latency in ms, from each request's intended send time (errors included):",
        "",
        *_latency_table(run),
        "",
        f"Errors by status code: {_errors(run)}",
        "",
        *_workload_table(run["workloads"]),
        "",
        _client_line(run["client"]),
        "",
    ]


def _latency_table(run: Mapping[str, Any]) -> list[str]:
    rows = [["all", *_latencies(run["latency_ms"])]]
    rows += [[name, *_latencies(w["latency_ms"])] for name, w in run["workloads"].items()]
    return _table(["", *(label for label, _ in PERCENTILE_COLUMNS), "max", "mean"], rows)


def _latencies(summary: Mapping[str, float]) -> list[str]:
    keys = [key for _, key in PERCENTILE_COLUMNS] + ["max", "mean"]
    return [_ms(summary[key]) for key in keys]


def _workload_table(workloads: Mapping[str, Any]) -> list[str]:
    rows = [
        [name, w["sent"], w["completed"], _codes(w["errors_by_code"]), w["unexpected"]]
        for name, w in workloads.items()
    ]
    return _table(["workload", "sent", "completed", "errors by code", "unexpected"], rows)


def _errors(run: Mapping[str, Any]) -> str:
    if not run["errors"]:
        return "none."
    reasons = ", ".join(f"{k} {v}" for k, v in run["errors_by_reason"].items())
    verdict = (
        "all expected (the fail workload raises on purpose)."
        if not run["unexpected"]
        else f"{run['unexpected']} unexpected outcomes."
    )
    return f"{_codes(run['errors_by_code'])} (by reason: {reasons}); {verdict}"


def _codes(by_code: Mapping[str, int]) -> str:
    return ", ".join(f"{code} {n}" for code, n in by_code.items()) or "-"


def _client_line(client: Mapping[str, Any]) -> str:
    lag, wait = client["lag_ms"], client["queue_wait_ms"]
    text = (
        f"Client: arrivals started late by p50 {_ms(lag['p50'])} / p99 {_ms(lag['p99'])} /"
        f" max {_ms(lag['max'])} ms; waited for a slot p99 {_ms(wait['p99'])} ms"
        f" ({client['expired_in_queue']} expired waiting); CPU {client['cpu_percent']:g}% of one"
        f" core; at most {client['max_in_flight']} of {client['concurrency_cap']} in flight."
    )
    if client["saturated"]:
        return text + " **The load generator fell behind: latencies include its own delay.**"
    return text + " The load generator kept its schedule."


def _saturation_section(saturation: Mapping[str, Any]) -> list[str]:
    criteria = saturation["criteria"]
    rows = [_step_row(step) for step in saturation["steps"]]
    return [
        "## Saturation search",
        "",
        f"Steps of {criteria['step_duration_s']:g} s, rate x{criteria['factor']:g} per step, until"
        f" p99 > {criteria['p99_ms']:g} ms or unexpected outcomes >"
        f" {criteria['unexpected_rate']:.1%} (a breaking step is run again up to"
        f" {criteria['retries']} time(s); the last attempt decides). Rates in req/s, latencies"
        " in ms.",
        "",
        *_table(STEP_COLUMNS, rows),
        "",
        f"**{saturation['conclusion']}**",
        "",
    ]


def _step_row(step: Mapping[str, Any]) -> list[str]:
    latency, client = step["latency_ms"], step["client"]
    return [
        _step_rate(step),
        f"{step['achieved_rate']:g}",
        *(_ms(latency[key]) for key in ("p50", "p99", "p99_9", "max")),
        f"{step['unexpected']}/{step['sent']}",
        _ms(client["lag_ms"]["p99"]),
        f"{client['cpu_percent']:g}%",
        "; ".join(step["broken_by"]) or "held",
    ]


def _step_rate(step: Mapping[str, Any]) -> str:
    rate = f"{step['offered_rate']:g}"
    return rate if step.get("attempt", 1) == 1 else f"{rate} (again)"


def _ms(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table, numbers right-aligned."""
    align = ["---" if h in _LEFT_ALIGNED else "---:" for h in headers]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines
