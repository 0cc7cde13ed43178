"""Reading churn.dlq back, and re-publishing what a fix made acceptable.

A rejected event is never dropped: the worker (and `churnmon replay`) write
its original bytes to churn.dlq with why and where in headers. Someone then
fixes the cause, either on the monitor's side (a raised size limit, a schema
that learnt a new event type) or at the source (a billing export that wrote
negative amounts). `churnmon dlq list` shows what is there; `churnmon dlq
republish` sends the original bytes back to the topic they came from, for
the worker to judge again. What is still wrong is dead-lettered again, with
the re-publication recorded in a header, so nothing loops unnoticed; what is
fixed is applied, and a second re-publication of the same event is dropped by
the per-customer event-id window (`state.apply`).

Records `churnmon replay` rejected never reached an input topic (their
headers name a file and line, not a topic): fix the file and replay it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

REASON = "churnmon.error.reason"
DETAIL = "churnmon.error.detail"
AT = "churnmon.error.at"
SOURCE_TOPIC = "churnmon.source.topic"
SOURCE_PARTITION = "churnmon.source.partition"
SOURCE_OFFSET = "churnmon.source.offset"
SOURCE_FILE = "churnmon.source.file"
SOURCE_LINE = "churnmon.source.line"
REPUBLISHED_FROM = "churnmon.republished.from"  # "churn.dlq/<partition>/<offset>" of the copy re-sent


@dataclass(frozen=True)
class DeadLetter:
    """One churn.dlq record, decoded from its headers."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    reason: str
    detail: str
    at: str
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    source_file: str | None
    source_line: int | None
    republished_from: str | None

    @classmethod
    def of(cls, partition: int, offset: int, key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes]]) -> "DeadLetter":
        h = {k: v.decode("utf-8", "replace") for k, v in headers or ()}
        return cls(
            partition=partition, offset=offset, key=key, value=value or b"",
            reason=h.get(REASON, "unknown"), detail=h.get(DETAIL, ""), at=h.get(AT, ""),
            source_topic=h.get(SOURCE_TOPIC), source_partition=_int(h.get(SOURCE_PARTITION)),
            source_offset=_int(h.get(SOURCE_OFFSET)), source_file=h.get(SOURCE_FILE),
            source_line=_int(h.get(SOURCE_LINE)), republished_from=h.get(REPUBLISHED_FROM),
        )

    @property
    def where(self) -> str:
        """Where the record came from, for people: topic[partition]@offset or file:line."""
        if self.source_topic is not None:
            return f"{self.source_topic}[{self.source_partition}]@{self.source_offset}"
        if self.source_file is not None:
            return f"{self.source_file}:{self.source_line}"
        return "unknown source"

    @property
    def republishable(self) -> bool:
        return self.source_topic is not None

    def republish_headers(self) -> list[tuple[str, bytes]]:
        return [(REPUBLISHED_FROM, f"churn.dlq/{self.partition}/{self.offset}".encode())]


def headers(reason: str, detail: str, source: dict[str, object], at: str) -> list[tuple[str, bytes]]:
    """The headers of a record sent to churn.dlq: why, from where (`source`
    maps SOURCE_* header names to values), and when."""
    out = [(REASON, reason.encode()), (DETAIL, detail.encode()[:1000])]
    out += [(name, str(value).encode()) for name, value in source.items()]
    return out + [(AT, at.encode())]


def from_topic(reason: str, detail: str, topic: str, partition: int, offset: int, at: str,
               prior: Iterable[tuple[str, bytes]] = ()) -> list[tuple[str, bytes]]:
    """`headers` for a record read from a topic; a record that was itself
    re-published from churn.dlq (`prior`, its own headers) and is still
    wrong also says where it was re-sent from, so nothing loops unnoticed.

    >>> [k for k, _ in from_topic("schema", "x", "churn.usage", 3, 7, "t", [(REPUBLISHED_FROM, b"churn.dlq/0/1")])][-1]
    'churnmon.republished.from'
    """
    source = {SOURCE_TOPIC: topic, SOURCE_PARTITION: partition, SOURCE_OFFSET: offset}
    return headers(reason, detail, source, at) + [(k, v) for k, v in prior if k == REPUBLISHED_FROM]


def _int(s: str | None) -> int | None:
    try:
        return int(s) if s is not None else None
    except ValueError:
        return None


def select(letters: Iterable[DeadLetter], *, reason: str | None = None, topic: str | None = None) -> list[DeadLetter]:
    """The records matching every filter given (None = any), in DLQ order.

    >>> a = DeadLetter(0, 1, b"c", b"x", "not_json", "", "", "churn.usage", 0, 5, None, None, None)
    >>> b = DeadLetter(0, 2, b"c", b"y", "bad_value", "", "", "churn.subscription", 0, 9, None, None, None)
    >>> [d.offset for d in select([a, b], reason="bad_value")]
    [2]
    """
    return [d for d in letters if (reason is None or d.reason == reason) and (topic is None or d.source_topic == topic)]


def summary(letters: Iterable[DeadLetter]) -> list[tuple[str, str, int]]:
    """(reason, source, count) rows, largest first: what to fix first."""
    counts = Counter((d.reason, d.source_topic or "replay file") for d in letters)
    return [(r, s, n) for (r, s), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def line(d: DeadLetter, width: int = 100) -> str:
    """One readable line: position, reason, source, detail, the start of the bytes."""
    preview = d.value[:60].decode("utf-8", "replace").replace("\n", "\\n")
    again = f" (re-published from {d.republished_from})" if d.republished_from else ""
    return f"dlq[{d.partition}]@{d.offset} {d.reason:<14} {d.where}{again}: {d.detail[:width]} | {preview}"
