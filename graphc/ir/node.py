"""Frozen node records: the vertices of a graphc graph.

A :class:`Node` carries everything about a value except where its inputs come
from (those are the graph's ordered edges).  Two nodes with the same op,
attributes, shape and dtype compare equal, which is what makes common
sub-expression elimination a dictionary lookup.  ``name`` and ``loc`` are
annotations for people (parameter names, the user's ``file:line``) and are left
out of equality.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Float nodes stay "float" until a program is compiled with a concrete dtype,
# so one symbolic graph serves float32 and float64 programs.
FLOAT = "float"
INT = "int64"
TUPLE = "tuple"
NONE = "none"

Shape = tuple  # of int | None (None is the batch dimension)


def freeze(value: Any) -> Any:
    """Turn lists (and nested lists) into tuples so attribute values hash."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    return value


@dataclass(frozen=True)
class Node:
    op: str
    attrs: tuple = ()
    shape: Shape = ()
    dtype: str = FLOAT
    name: str | None = field(default=None, compare=False)
    loc: str | None = field(default=None, compare=False)

    @staticmethod
    def make(op: str, attrs: dict | None = None, shape: Shape = (), dtype: str = FLOAT,
             name: str | None = None, loc: str | None = None) -> Node:
        items = tuple(sorted((k, freeze(v)) for k, v in (attrs or {}).items()))
        return Node(op, items, tuple(shape), dtype, name, loc)

    @property
    def attr(self) -> dict:
        return dict(self.attrs)

    def get(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    def replace(self, **changes: Any) -> Node:
        if "attrs" in changes and isinstance(changes["attrs"], dict):
            changes["attrs"] = tuple(sorted((k, freeze(v)) for k, v in changes["attrs"].items()))
        return dataclasses.replace(self, **changes)

    @property
    def is_tuple(self) -> bool:
        return self.dtype == TUPLE

    @property
    def ndim(self) -> int:
        return len(self.shape)


def shape_str(shape: Shape) -> str:
    dims = ", ".join("N" if d is None else str(d) for d in shape)
    return f"({dims},)" if len(shape) == 1 else f"({dims})"
