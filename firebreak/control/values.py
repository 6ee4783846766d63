"""Parsing what the agent reads from etcd and Patroni, at the edge: each type's from_value builds
on these, and a value that does not parse is BadValue naming the key and the field, so nothing
downstream ever sees a value of the wrong type."""

from __future__ import annotations

import json
import math
from typing import Any

from firebreak.errors import BadValue


def json_object(raw: str, what: str) -> dict[str, Any]:
    """`raw` as a JSON object, or BadValue: `what` names the value (e.g. "view pangyo")."""
    try:
        d = json.loads(raw)
    except ValueError as e:
        raise BadValue(f"{what}: not JSON ({e})") from None
    if not isinstance(d, dict):
        raise BadValue(f"{what}: a JSON object is expected, got {type(d).__name__}")
    return d


def seconds(value: object, what: str, minimum: float | None = None) -> float:
    """A finite number of seconds. bool is an int to Python, and NaN compares false with
    everything: both would slip past a plain float() into the detector's arithmetic."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadValue(f"{what}: a finite number of seconds is expected, got {value!r}")
    if minimum is not None and value < minimum:
        raise BadValue(f"{what}: {value!r} is below {minimum:g}")
    return float(value)
