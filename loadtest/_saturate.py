"""The saturation search: raise the rate step by step until p99 or errors break a threshold.

Each step is an ordinary open-model phase. The highest rate whose step held both thresholds
is the answer; the step after it says what broke. When the load generator itself fell behind
at the breaking step, the answer is a lower bound for the server and the report says so.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from ._config import PhaseConfig, SaturationConfig
from ._runner import PhaseResult
from ._stats import summarize

#: Runs one phase (with whatever progress display the caller wants).
PhaseRunner = Callable[[PhaseConfig, str], Awaitable[PhaseResult]]


def step_rates(config: SaturationConfig) -> list[float]:
    """The rates to try: start, start x factor, ... up to max_rate (3 significant digits)."""
    rates, rate = [], config.start_rate
    while rate <= config.max_rate * (1 + 1e-9):
        rates.append(float(f"{rate:.3g}"))
        rate *= config.factor
    return rates


def broken(step: Mapping[str, Any], config: SaturationConfig) -> list[str]:
    """Why a step failed the thresholds; [] when it held."""
    reasons = []
    p99 = step["latency_ms"]["p99"]
    if math.isnan(p99) or p99 > config.p99_ms:
        reasons.append(f"p99 {p99:.1f} ms > {config.p99_ms:g} ms")
    share = step["unexpected"] / step["sent"] if step["sent"] else 1.0
    if share > config.error_rate:
        reasons.append(f"unexpected outcomes {share:.1%} > {config.error_rate:.1%}")
    return reasons


async def search(run: PhaseRunner, base: PhaseConfig, config: SaturationConfig) -> dict[str, Any]:
    """Step the rate until a step breaks (or max_rate is reached); return the findings.

    ``base`` gives the mix, concurrency cap and timeout; ``run`` runs one phase, labelled.
    """
    steps: list[dict[str, Any]] = []
    for index, rate in enumerate(step_rates(config)):
        if index:
            await asyncio.sleep(config.settle)
        phase = replace(base, rate=rate, duration=config.step_duration)
        steps += await attempts(run, phase, f"step {index + 1} {rate:g}/s", config)
        if steps[-1]["broken_by"]:
            break
    return findings(steps, config)


async def attempts(
    run: PhaseRunner, phase: PhaseConfig, label: str, config: SaturationConfig
) -> list[dict[str, Any]]:
    """Run one step; while it breaks, run it again (``config.retries`` times at most), so one
    hiccup of a shared machine is not taken for saturation. The last attempt decides."""
    found: list[dict[str, Any]] = []
    for attempt in range(1, config.retries + 2):
        if found:
            await asyncio.sleep(config.settle)
        result = await run(phase, label if attempt == 1 else f"{label} again")
        step = summarize(result, timeline=False)
        step["attempt"] = attempt
        step["broken_by"] = broken(step, config)
        found.append(step)
        if not step["broken_by"]:
            break
    return found


def findings(steps: list[dict[str, Any]], config: SaturationConfig) -> dict[str, Any]:
    """The verdict over all steps: highest rate held, what broke, whether the client limited."""
    held = [s for s in steps if not s["broken_by"]]
    broke = steps[-1] if steps and steps[-1]["broken_by"] else None
    result: dict[str, Any] = {
        "criteria": {
            "p99_ms": config.p99_ms,
            "unexpected_rate": config.error_rate,
            "step_duration_s": config.step_duration,
            "factor": config.factor,
            "retries": config.retries,
        },
        "steps": steps,
        "held_rate": held[-1]["offered_rate"] if held else None,
        "broke_at": broke["offered_rate"] if broke else None,
        "broken_by": broke["broken_by"] if broke else [],
        "client_saturated": bool(broke and broke["client"]["saturated"]),
    }
    result["conclusion"] = conclusion(result, config)
    return result


def conclusion(result: Mapping[str, Any], config: SaturationConfig) -> str:
    """One or two sentences a person can act on."""
    held, broke = result["held_rate"], result["broke_at"]
    if broke is None:
        last = result["steps"][-1]["offered_rate"] if result["steps"] else config.start_rate
        return f"Did not saturate: every step held, up to {last:g} req/s (raise --max-rate)."
    step = result["steps"][-1]
    because = "; ".join(step["broken_by"])
    answered = f"answers came back at {step['achieved_rate']:g} req/s"
    if held is None:
        text = f"Broke at the first step, {broke:g} req/s ({because}; {answered}):"
        text += " lower --start-rate."
    else:
        text = f"Saturation point: held {held:g} req/s; broke at {broke:g} req/s ({because};"
        text += f" {answered})."
    if result["client_saturated"]:
        lag = step["client"]["lag_ms"]["p99"]
        text += (
            f" The load generator also fell behind its own schedule at that step (arrival lag"
            f" p99 {lag:.0f} ms, CPU {step['client']['cpu_percent']:g}%): when it shares the"
            " machine with the server, part of the break may be its own; run it from another"
            " machine for a firmer number."
        )
    return text
