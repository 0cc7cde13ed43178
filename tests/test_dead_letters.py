"""churn.dlq records decoded from their headers: the pure half of `churnmon dlq`."""

from __future__ import annotations

from stream_app.ingest import dead_letters as dl


def record(offset: int, reason: str, topic: str | None = "churn.usage", again: str | None = None) -> dl.DeadLetter:
    headers = [(dl.REASON, reason.encode()), (dl.DETAIL, b"why"), (dl.AT, b"2025-01-01T00:00:00Z")]
    if topic:
        headers += [(dl.SOURCE_TOPIC, topic.encode()), (dl.SOURCE_PARTITION, b"3"), (dl.SOURCE_OFFSET, str(offset * 10).encode())]
    else:
        headers += [(dl.SOURCE_FILE, b"events.jsonl"), (dl.SOURCE_LINE, b"17")]
    if again:
        headers.append((dl.REPUBLISHED_FROM, again.encode()))
    return dl.DeadLetter.of(1, offset, b"cus-1", b'{"oops"', headers)


def test_headers_are_decoded():
    d = record(4, "not_json")
    assert (d.reason, d.source_topic, d.source_partition, d.source_offset, d.where) == ("not_json", "churn.usage", 3, 40, "churn.usage[3]@40")
    assert d.republishable and d.republish_headers() == [(dl.REPUBLISHED_FROM, b"churn.dlq/1/4")]


def test_replay_file_records_cannot_be_republished_to_a_topic():
    d = record(5, "bad_value", topic=None)
    assert not d.republishable and d.where == "events.jsonl:17"


def test_missing_or_garbled_headers_do_not_raise():
    d = dl.DeadLetter.of(0, 9, None, None, [(dl.SOURCE_PARTITION, b"x"), (dl.REASON, b"\xff\xfe")])
    assert d.value == b"" and d.source_partition is None and not d.republishable and d.where == "unknown source"


def test_select_and_summary():
    letters = [record(1, "not_json"), record(2, "bad_value", "churn.subscription"), record(3, "not_json"), record(4, "not_json", topic=None)]
    assert [d.offset for d in dl.select(letters, reason="not_json", topic="churn.usage")] == [1, 3]
    assert dl.summary(letters) == [("not_json", "churn.usage", 2), ("bad_value", "churn.subscription", 1), ("not_json", "replay file", 1)]


def test_line_says_where_it_was_republished_from():
    assert "re-published from churn.dlq/0/7" in dl.line(record(8, "not_json", again="churn.dlq/0/7"))
