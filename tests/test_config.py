import pytest

from stream_app.config import Settings


def test_env_then_overrides(monkeypatch):
    monkeypatch.setenv("CHURNMON_PARTITIONS", "4")
    monkeypatch.setenv("CHURNMON_WINDOWS_DAYS", "7,30")
    monkeypatch.setenv("CHURNMON_GRACE_DAYS", "10.5")
    s = Settings.load(partitions=None, web_port=7000)
    assert s.partitions == 4 and s.windows_days == (7, 30) and s.grace_days == 10.5 and s.web_port == 7000


@pytest.mark.parametrize("field, value, says", [
    ("partitions", 0, "partitions must be >= 1"),
    ("broker", "localhost:9092", "kafka://host:port"),
    ("store", "redis://", "memory:// or rocksdb://"),
    ("grace_days", -1.0, "grace_days must be > 0"),
])
def test_bad_settings_name_the_problem(field, value, says):
    with pytest.raises(ValueError, match=says):
        Settings.load(**{field: value})
