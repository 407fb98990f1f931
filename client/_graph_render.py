"""Pictures of a graph with its nodes' states: Graphviz DOT text, and an SVG drawn here with a
simple layered layout (each node one row below its lowest parent), so no Graphviz is needed.

A mapped node is drawn once, as a stack, with how many of its instances are done: a fan-out of
a thousand items stays one box.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from ._graph_spec import ordered

#: Fill colours by node state (Graphviz accepts the same "#rrggbb" strings).
COLOURS = {
    "PENDING": "#eeeeee",
    "WAITING": "#e0e0e0",
    "QUEUED": "#fff0a0",
    "RUNNING": "#9cc9ff",
    "SUCCEEDED": "#a6e3a1",
    "FAILED": "#f59a9a",
    "PARENT_FAILED": "#f8c99b",
    "CANCELLED": "#cdb8ec",
}
#: DOT attributes of an edge by how the child uses its parent.
DOT_EDGES = {"data": "", "order": " [style=dashed]", "map": ' [style=bold, label="map"]'}
SVG_EDGES = {"data": "", "order": ' stroke-dasharray="5,4"', "map": ' stroke-width="2.5"'}
CHAR_WIDTH, LINE_HEIGHT, PAD, GAP_X, GAP_Y, MARGIN, MIN_WIDTH = 7, 15, 8, 24, 44, 16, 90


@dataclass(frozen=True)
class Box:
    """One node as drawn."""

    id: str
    status: str
    #: A third line, e.g. "3/5 instances done" or "attempt 2"; "" for none.
    detail: str
    #: (parent id, "data" | "order" | "map").
    parents: tuple[tuple[str, str], ...]
    mapped: bool

    @property
    def lines(self) -> list[str]:
        return [self.id, self.status] + ([self.detail] if self.detail else [])


def to_dot(name: str, title: str, boxes: Sequence[Box]) -> str:
    """Graphviz DOT text: one box per node, filled with its state's colour."""
    lines = [
        f"digraph {_dot_quote(name or 'graph')} {{",
        f"  label={_dot_quote(title)}; labelloc=t;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];',
    ]
    for box in boxes:
        shape = ", shape=box3d" if box.mapped else ""
        label = _dot_quote("\n".join(box.lines))
        colour = COLOURS.get(box.status, "#ffffff")
        lines.append(f'  {_dot_quote(box.id)} [label={label}, fillcolor="{colour}"{shape}];')
    known = {box.id for box in boxes}
    for box in boxes:
        for parent, kind in box.parents:
            if parent in known:
                lines.append(f"  {_dot_quote(parent)} -> {_dot_quote(box.id)}{DOT_EDGES[kind]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


# ---------------------------------------------------------------- SVG

Place = tuple[float, float, float, float]  # x, y, width, height


def layers(boxes: Sequence[Box]) -> list[list[Box]]:
    """Rows of boxes: a node one row below its lowest parent; within a row, nodes sit near
    the middle of their parents (the order of the row above), which keeps most edges short."""
    by_id = {box.id: box for box in boxes}
    parents = {box.id: [p for p, _ in box.parents if p in by_id] for box in boxes}
    depth: dict[str, int] = {}
    for node_id in ordered(parents):
        depth[node_id] = 1 + max((depth[p] for p in parents[node_id]), default=-1)
    rows: list[list[Box]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for box in boxes:
        rows[depth[box.id]].append(box)
    position: dict[str, float] = {}
    for row in rows:
        row.sort(key=lambda b: _centre(parents[b.id], position))
        position.update({box.id: float(i) for i, box in enumerate(row)})
    return rows


def _centre(parents: list[str], position: dict[str, float]) -> float:
    return sum(position[p] for p in parents) / len(parents) if parents else -1.0


def to_svg(title: str, boxes: Sequence[Box]) -> str:
    """An SVG picture of the graph: title, boxes coloured by state, edges, a legend."""
    places, width, height = _place(layers(boxes))
    parts = [f'<text x="{MARGIN}" y="{MARGIN + 4}" font-weight="bold">{html.escape(title)}</text>']
    for box in boxes:
        for parent, kind in box.parents:
            if parent in places:
                parts.append(_edge(places[parent], places[box.id], kind))
    parts += [_box(box, places[box.id]) for box in boxes]
    legend, legend_height = _legend(sorted({box.status for box in boxes}), height)
    parts.append(legend)
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" '
        f'width="{width:.0f}" height="{height + legend_height:.0f}" '
        'font-family="Helvetica, Arial, sans-serif" font-size="12">\n'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" markerUnits="userSpaceOnUse" orient="auto">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>\n'
        + "\n".join(parts)
        + "\n</svg>\n"
    )


def _size(box: Box) -> tuple[float, float]:
    width = max(MIN_WIDTH, CHAR_WIDTH * max(len(line) for line in box.lines) + 2 * PAD)
    return width, 2 * PAD + LINE_HEIGHT * len(box.lines)


def _place(rows: list[list[Box]]) -> tuple[dict[str, Place], float, float]:
    """Each box's place, rows centred; and the picture's width and height."""
    sizes = [[_size(box) for box in row] for row in rows]
    widths = [sum(w for w, _ in row) + GAP_X * max(len(row) - 1, 0) for row in sizes]
    widest = max(widths, default=0.0)
    places: dict[str, Place] = {}
    y = MARGIN + 24.0  # below the title
    for row, row_sizes, row_width in zip(rows, sizes, widths, strict=True):
        x = MARGIN + (widest - row_width) / 2
        for box, (w, h) in zip(row, row_sizes, strict=True):
            places[box.id] = (x, y, w, h)
            x += w + GAP_X
        y += max(h for _, h in row_sizes) + GAP_Y
    return places, widest + 2 * MARGIN, y - GAP_Y + MARGIN


def _edge(start: Place, end: Place, kind: str) -> str:
    x1, y1 = start[0] + start[2] / 2, start[1] + start[3]
    x2, y2 = end[0] + end[2] / 2, end[1]
    bend = (y2 - y1) / 2
    return (
        f'<path d="M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + bend:.1f} {x2:.1f},{y2 - bend:.1f} '
        f'{x2:.1f},{y2:.1f}" fill="none" stroke="#555"{SVG_EDGES[kind]} '
        'marker-end="url(#arrow)"/>'
    )


def _box(box: Box, place: Place) -> str:
    x, y, w, h = place
    colour = COLOURS.get(box.status, "#ffffff")
    rect = (
        '<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" rx="6" fill="{}" '
        'stroke="#555"/>'
    )
    parts = [rect.format(x + d, y - d, w, h, colour) for d in ((6, 3) if box.mapped else ())]
    parts.append(rect.format(x, y, w, h, colour))
    for i, line in enumerate(box.lines):
        weight = ' font-weight="bold"' if i == 0 else ""
        baseline = y + PAD + LINE_HEIGHT * (i + 1) - 3
        parts.append(
            f'<text x="{x + w / 2:.1f}" y="{baseline:.1f}" text-anchor="middle"{weight}>'
            f"{html.escape(line)}</text>"
        )
    return f'<g id="{html.escape(box.id)}">' + "".join(parts) + "</g>"


def _legend(states: list[str], top: float) -> tuple[str, float]:
    """One swatch per state shown, in a row under the picture."""
    parts, x = [], float(MARGIN)
    for state in states:
        parts.append(
            f'<rect x="{x:.0f}" y="{top:.0f}" width="12" height="12" rx="2" '
            f'fill="{COLOURS.get(state, "#ffffff")}" stroke="#555"/>'
            f'<text x="{x + 16:.0f}" y="{top + 10:.0f}">{html.escape(state)}</text>'
        )
        x += 16 + CHAR_WIDTH * len(state) + 14
    return "".join(parts), 12 + MARGIN
