"""Plain Python data (lists, tuples, dicts, big ints) as one JSON text.

Checked before dumping, so the error names the offending member and its place instead of
``json``'s bare "not JSON serializable", and so values JSON would change are refused rather
than altered: non-str dict keys (JSON would stringify them) and NaN or infinity (not JSON).
"""

from __future__ import annotations

import json
import math
from typing import NoReturn

from ._errors import UnsupportedTypeError, type_name

_MAX_DEPTH = 200
_SUPPORTED = (
    "JSON values may hold only None, bool, int, float, str, and lists, tuples and dicts with "
    "str keys of these"
)


def to_json(value: object) -> str:
    """``value`` as JSON text; UnsupportedTypeError names the first member JSON cannot hold."""
    _check(value, value, "", 0, set())
    return json.dumps(value, allow_nan=False)


def _check(root: object, value: object, path: str, depth: int, active: set[int]) -> None:
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            _fail(root, path, f"is {value!r}; JSON has no NaN or infinity")
        return
    if not isinstance(value, list | tuple | dict):
        _fail(root, path, f"has type {type_name(value)!r}")
    if depth >= _MAX_DEPTH or id(value) in active:
        _fail(root, path, "is nested too deeply (or contains itself)")
    active.add(id(value))
    if isinstance(value, dict):
        for key, member in value.items():
            if not isinstance(key, str):
                _fail(root, path, f"has a key {key!r} of type {type_name(key)!r}, not str")
            _check(root, member, f"{path}[{key!r}]", depth + 1, active)
    else:
        for index, member in enumerate(value):
            _check(root, member, f"{path}[{index}]", depth + 1, active)
    active.discard(id(value))


def _fail(root: object, path: str, problem: str) -> NoReturn:
    where = f"its member {path}" if path else "it"
    raise UnsupportedTypeError(
        f"cannot convert a {type_name(root)!r} to Arrow as JSON: {where} {problem}; {_SUPPORTED}"
    )
