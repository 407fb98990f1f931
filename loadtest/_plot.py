"""latency.html: one self-contained page with inline SVG charts (no plotting dependency).

- the run: every request's latency (log scale) at its intended send time, coloured by
  workload, unexpected outcomes as red crosses, per-second p50 and p99 drawn over them;
- the saturation search: p50 / p99 / p99.9 per step against the offered rate, with the p99
  threshold, and the rate that held.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._runner import PhaseResult, Sample

WIDTH, HEIGHT = 920, 380
LEFT, RIGHT, TOP, BOTTOM = 64, 150, 16, 44
MAX_POINTS = 8000
COLOURS = {"trivial": "#4c78a8", "array": "#59a14f", "large": "#f28e2b", "fail": "#b07aa1"}
UNEXPECTED = "#e15759"


@dataclass(frozen=True)
class Axis:
    """Maps data values in [lo, hi] to pixels in [start, end], linear or log10."""

    lo: float
    hi: float
    start: float
    end: float
    log: bool = False

    def _scaled(self, value: float) -> float:
        return math.log10(value) if self.log else value

    def __call__(self, value: float) -> float:
        value = min(max(value, self.lo), self.hi)
        lo, hi = self._scaled(self.lo), self._scaled(self.hi)
        share = (self._scaled(value) - lo) / (hi - lo) if hi > lo else 0.5
        return self.start + share * (self.end - self.start)

    def ticks(self) -> list[float]:
        if self.log:
            decades = range(math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi)) + 1)
            found = [m * 10.0**d for d in decades for m in (1, 2, 5)]
        else:
            step = _nice_step((self.hi - self.lo) / 6)
            found = [i * step for i in range(math.ceil(self.lo / step), int(self.hi / step) + 1)]
        return [t for t in found if self.lo <= t <= self.hi]


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def log_axis(values: Iterable[float], start: float, end: float) -> Axis:
    """A log axis covering the positive values, padded to whole 1-2-5 steps."""
    positive = [v for v in values if v > 0 and math.isfinite(v)] or [1.0]
    lo, hi = min(positive), max(positive)
    lo = 10.0 ** math.floor(math.log10(lo))
    hi = 10.0 ** math.ceil(math.log10(hi * 1.05)) if hi > lo else lo * 10
    return Axis(lo, hi, start, end, log=True)


def _label(value: float) -> str:
    return f"{value:g}" if value < 1e6 else f"{value:.0e}"


def element(tag: str, text: str = "", **attrs: Any) -> str:
    """One SVG element; attribute names use ``_`` for ``-`` and floats get one decimal."""
    rendered = " ".join(
        f'{k.rstrip("_").replace("_", "-")}="{v:.1f}"'
        if isinstance(v, float)
        else f'{k.rstrip("_").replace("_", "-")}="{v}"'
        for k, v in attrs.items()
    )
    return f"<{tag} {rendered}>{html.escape(text)}</{tag}>" if text else f"<{tag} {rendered}/>"


def frame(x: Axis, y: Axis, x_title: str, y_title: str) -> list[str]:
    """Grid, tick labels and axis titles."""
    parts = []
    for tick in y.ticks():
        py = y(tick)
        parts.append(element("line", x1=LEFT, x2=x.end, y1=py, y2=py, class_="grid"))
        parts.append(element("text", _label(tick), x=LEFT - 6, y=py + 4, text_anchor="end"))
    for tick in x.ticks():
        px = x(tick)
        parts.append(element("line", x1=px, x2=px, y1=TOP, y2=y.start, class_="grid"))
        parts.append(element("text", _label(tick), x=px, y=y.start + 16, text_anchor="middle"))
    middle = f"translate(14 {(TOP + y.start) / 2}) rotate(-90)"
    parts.append(element("text", x_title, x=(LEFT + x.end) / 2, y=HEIGHT - 6, text_anchor="middle"))
    parts.append(element("text", y_title, transform=middle, text_anchor="middle"))
    return parts


def polyline(points: Sequence[tuple[float, float]], colour: str, dash: str = "") -> str:
    """A line through pixel points."""
    coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
    dashing = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dashing}/>'


def legend(entries: Sequence[tuple[str, str, str]]) -> list[str]:
    """Swatches and names at the right of the chart: a "dot", "ring", "line" or "dash"."""
    left = WIDTH - RIGHT + 16
    parts = []
    for index, (name, colour, swatch) in enumerate(entries):
        middle = TOP + 14 + index * 20
        if swatch in ("dot", "ring"):
            fill = colour if swatch == "dot" else "none"
            parts.append(
                element("circle", cx=left + 6.0, cy=middle, r=4.0, fill=fill, stroke=colour)
            )
        else:
            dash = "4 3" if swatch == "dash" else "none"
            parts.append(
                element(
                    "line",
                    x1=left,
                    x2=left + 14,
                    y1=middle,
                    y2=middle,
                    stroke=colour,
                    stroke_width=2,
                    stroke_dasharray=dash,
                )
            )
        parts.append(element("text", name, x=left + 20, y=middle + 4))
    return parts


def svg(parts: Iterable[str], title: str) -> str:
    body = "\n".join(parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img"><title>{html.escape(title)}</title>\n'
        f"{body}\n</svg>"
    )


def thin(samples: Sequence[Sample]) -> list[Sample]:
    """At most MAX_POINTS samples: every k-th, plus every unexpected one and the slowest."""
    if len(samples) <= MAX_POINTS:
        return list(samples)
    keep = math.ceil(len(samples) / MAX_POINTS)
    slowest = max(samples, key=lambda s: s.latency)
    return [s for i, s in enumerate(samples) if i % keep == 0 or not s.expected or s is slowest]


def run_chart(result: PhaseResult, timeline: Sequence[Mapping[str, Any]]) -> str:
    """Latency over (intended send) time for the constant-rate run."""
    samples = thin(result.samples)
    end = max([result.config.duration, *(s.intended for s in samples)])
    x = Axis(0.0, end, LEFT, WIDTH - RIGHT)
    y = log_axis((s.latency * 1000 for s in samples), HEIGHT - BOTTOM, TOP)
    parts = frame(x, y, "intended send time (s)", "latency (ms, log)")
    parts += [_point(s, x(s.intended), y(s.latency * 1000)) for s in samples]
    for key, colour, dash in (("p50", "#333", "4 3"), ("p99", "#000", "")):
        line = [(x(row["t"] + 0.5), y(row[key])) for row in timeline if _finite(row[key])]
        parts.append(polyline(line, colour, dash))
    names = [(n, COLOURS.get(n, "#777"), "dot") for n in dict.fromkeys(s.workload for s in samples)]
    entries = [
        *names,
        ("unexpected", UNEXPECTED, "dot"),
        ("p50 per s", "#333", "dash"),
        ("p99 per s", "#000", "line"),
    ]
    return svg([*parts, *legend(entries)], "latency over time")


def _point(sample: Sample, px: float, py: float) -> str:
    if not sample.expected:
        cross = f"M{px - 3:.1f},{py - 3:.1f}l6,6m0,-6l-6,6"
        return element("path", d=cross, stroke=UNEXPECTED)
    colour = COLOURS.get(sample.workload, "#777")
    return element("circle", cx=px, cy=py, r=1.8, fill=colour, fill_opacity="0.55")


def saturation_chart(saturation: Mapping[str, Any]) -> str:
    """p50 / p99 / p99.9 against the offered rate, one point per step."""
    steps = saturation["steps"]
    threshold = saturation["criteria"]["p99_ms"]
    keys = (("p50", "#4c78a8"), ("p99", "#000"), ("p99_9", UNEXPECTED))
    values = [s["latency_ms"][k] for s in steps for k, _ in keys] + [threshold]
    x = log_axis([s["offered_rate"] for s in steps], LEFT, WIDTH - RIGHT)
    y = log_axis(values, HEIGHT - BOTTOM, TOP)
    parts = frame(x, y, "offered rate (req/s, log)", "latency (ms, log)")
    ty = y(threshold)
    parts.append(
        element("line", x1=LEFT, x2=x.end, y1=ty, y2=ty, stroke=UNEXPECTED, stroke_dasharray="4 3")
    )
    if saturation["held_rate"]:
        hx = x(saturation["held_rate"])
        parts.append(
            element("line", x1=hx, x2=hx, y1=TOP, y2=y.start, stroke="#59a14f", stroke_width=2)
        )
    deciding = {s["offered_rate"]: s for s in steps}  # a rate's last attempt decides
    for key, colour in keys:
        shown = [s for s in steps if _finite(s["latency_ms"][key])]
        final = [_xy(x, y, s, key) for s in shown if s is deciding[s["offered_rate"]]]
        earlier = [_xy(x, y, s, key) for s in shown if s is not deciding[s["offered_rate"]]]
        parts.append(polyline(final, colour))
        parts += [element("circle", cx=px, cy=py, r=3.0, fill=colour) for px, py in final]
        parts += [
            element("circle", cx=px, cy=py, r=3.0, fill="none", stroke=colour) for px, py in earlier
        ]
    entries = [
        ("p50", "#4c78a8", "line"),
        ("p99", "#000", "line"),
        ("p99.9", UNEXPECTED, "line"),
        ("p99 limit", UNEXPECTED, "dash"),
        ("held rate", "#59a14f", "line"),
        ("(earlier attempt)", "#777", "ring"),
    ]
    return svg([*parts, *legend(entries)], "latency by offered rate")


def _xy(x: Axis, y: Axis, step: Mapping[str, Any], key: str) -> tuple[float, float]:
    return x(step["offered_rate"]), y(step["latency_ms"][key])


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def page(title: str, sections: Sequence[tuple[str, str]], summary_html: str) -> str:
    """The whole HTML document: summary, then one heading and chart per section."""
    charts = "\n".join(f"<h2>{html.escape(h)}</h2>\n{chart}" for h, chart in sections)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 24px; color: #222; }}
svg text {{ font: 11px system-ui, sans-serif; fill: #333; }}
svg .grid {{ stroke: #e4e4e4; }}
pre {{ background: #f6f6f6; padding: 12px; overflow-x: auto; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{summary_html}
{charts}
</body></html>
"""
