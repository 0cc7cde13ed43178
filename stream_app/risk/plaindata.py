"""A river object as plain data, and back, without running code from the data.

Why not pickle: a model snapshot is read by every worker from churn.models,
and unpickling runs whatever the record says. A Hoeffding tree is a handful
of river classes holding numbers, dicts and lists, so it can travel as JSON
instead: `dump` turns the object graph into tagged JSON values; `load`
rebuilds it from an allowlist of classes (`object.__new__` and the
instance's attribute dict: no constructor, no `__setstate__`, nothing
named by the data is called), with bounded nesting and size. Only the
classes a tree is made of are allowed; anything else is refused by name.

Tags (every container is tagged, so a JSON object is never ambiguous)::

    {"list": [...]}, {"tuple": [...]}, {"set": [...]},
    {"dict": [[key, value], ...]}          keys may be bools, numbers, strings
    {"float": "inf" | "-inf" | "nan"}      JSON has no such numbers
    {"obj": "<Class>", "attrs": {...}}     an allowlisted class
    {"obj": "Random"}                      a fresh random.Random (its state is not a model's)

A structurally valid graph can still be a nonsense model (a threshold that
is a string); the caller checks what it loaded (`model.tree_problem`).

>>> from river import stats
>>> m = stats.Mean(); m.update(2.0); m.update(4.0)
>>> back = load(dump(m), {"Mean": stats.Mean})
>>> type(back).__name__, back.get(), back.n
('Mean', 3.0, 2.0)
>>> load({"obj": "Popen", "attrs": {}}, {"Mean": stats.Mean})
Traceback (most recent call last):
...
stream_app.risk.plaindata.PlainDataError: class 'Popen' is not allowed here
"""

from __future__ import annotations

import math
import random
import re
from typing import Any, Mapping

__all__ = ["dump", "load", "PlainDataError", "MAX_DEPTH", "MAX_ITEMS"]

MAX_DEPTH = 200  # nesting levels (a tree node is ~6 levels deep: far above any bounded tree)
MAX_ITEMS = 2_000_000  # values in one graph
_ATTR = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class PlainDataError(ValueError):
    """The data is not a graph `load` accepts (the message says why)."""


def dump(obj: Any) -> Any:
    """`obj` as JSON-compatible tagged values (see the module docstring)."""
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return {"float": "nan" if obj != obj else ("inf" if obj > 0 else "-inf")}
    if isinstance(obj, list):
        return {"list": [dump(v) for v in obj]}
    if isinstance(obj, tuple):
        return {"tuple": [dump(v) for v in obj]}
    if isinstance(obj, (set, frozenset)):
        return {"set": [dump(v) for v in sorted(obj, key=repr)]}
    if isinstance(obj, dict):
        return {"dict": [[dump(k), dump(v)] for k, v in obj.items()]}
    if isinstance(obj, random.Random):
        return {"obj": "Random"}
    attrs = getattr(obj, "__dict__", None)
    if attrs is None:
        raise PlainDataError(f"{type(obj).__name__} has no attribute dict to write")
    return {"obj": type(obj).__name__, "attrs": {k: dump(v) for k, v in attrs.items()}}


_SPECIAL_FLOATS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def load(data: Any, classes: Mapping[str, type]) -> Any:
    """The object graph `data` describes, built only from `classes` (name -> class).

    Raises PlainDataError naming the first problem.
    """
    budget = [MAX_ITEMS]
    return _load(data, classes, 0, budget)


def _load(data: Any, classes: Mapping[str, type], depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise PlainDataError(f"more than {MAX_ITEMS} values")
    if depth > MAX_DEPTH:
        raise PlainDataError(f"nested deeper than {MAX_DEPTH} levels")
    if data is None or isinstance(data, (bool, str, int)):
        return data
    if isinstance(data, float):
        if not math.isfinite(data):
            raise PlainDataError("a bare non-finite number")
        return data
    if isinstance(data, list):
        raise PlainDataError("an untagged list")
    if not isinstance(data, dict) or len(data) not in (1, 2):
        raise PlainDataError(f"an untagged {type(data).__name__}")
    d = depth + 1
    if len(data) == 1:
        (tag, value), = data.items()
        if tag in ("list", "tuple", "set"):
            if not isinstance(value, list):
                raise PlainDataError(f"{tag} must hold a list")
            items = [_load(v, classes, d, budget) for v in value]
            if tag == "list":
                return items
            if tag == "tuple":
                return tuple(items)
            try:
                return set(items)
            except TypeError:
                raise PlainDataError("a set of unhashable values") from None
        if tag == "dict":
            if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
                raise PlainDataError("dict must hold [key, value] pairs")
            out = {}
            for k, v in value:
                key = _load(k, classes, d, budget)
                if not isinstance(key, (bool, int, float, str, type(None))):
                    raise PlainDataError(f"a dict key of type {type(key).__name__}")
                out[key] = _load(v, classes, d, budget)
            return out
        if tag == "float":
            if value not in _SPECIAL_FLOATS:
                raise PlainDataError(f"float tag {value!r} is not inf, -inf or nan")
            return _SPECIAL_FLOATS[value]
        if tag == "obj" and value == "Random":
            return random.Random()
        raise PlainDataError(f"unknown tag {str(tag)[:40]!r}")
    name, attrs = data.get("obj"), data.get("attrs")
    if not isinstance(name, str) or not isinstance(attrs, dict):
        raise PlainDataError("an object needs a class name and an attrs object")
    cls = classes.get(name)
    if cls is None:
        raise PlainDataError(f"class {name[:60]!r} is not allowed here")
    obj = object.__new__(cls)  # no constructor: nothing the data names runs
    state = {}
    for k, v in attrs.items():
        if not _ATTR.fullmatch(k) or k.startswith("__"):
            raise PlainDataError(f"attribute name {k[:60]!r} is not allowed")
        state[k] = _load(v, classes, d, budget)
    obj.__dict__.update(state)
    return obj
