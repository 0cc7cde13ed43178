"""Table values as msgpack arrays (msgspec), with what older releases wrote
as JSON still readable: a restarted worker recovers a changelog written by
the release before it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec
import orjson

T = TypeVar("T")


class PackedCodec(Generic[T]):
    """`encode` a struct; `decode` bytes of either format back into one.

    >>> class Point(msgspec.Struct, array_like=True):
    ...     x: int
    >>> codec = PackedCodec(Point, lambda d: Point(d["x"]))
    >>> codec.decode(codec.encode(Point(3))), codec.decode(b'{"x": 4}')
    (Point(x=3), Point(x=4))
    """

    def __init__(self, cls: type[T], legacy: Callable[[dict[str, Any]], T]) -> None:
        self.encode: Callable[[T], bytes] = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(cls).decode
        self._legacy = legacy

    def decode(self, raw: bytes) -> T:
        if raw[:1] == b"{":  # JSON: written before the packed format
            return self._legacy(orjson.loads(raw))
        return self._decode(raw)
