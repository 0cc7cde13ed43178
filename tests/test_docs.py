"""The README's tables are the code's: every metric and setting is documented."""

from pathlib import Path

from stream_app.config import settings_markdown, settings_table
from stream_app.runtime.metrics import REFERENCE, Metrics

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_metric_is_documented():
    Metrics()  # registers the collector-side names too
    missing = [name for name in REFERENCE if f"`{name}`" not in README]
    assert not missing


def test_every_setting_is_documented():
    missing = [env for _, env, _, _ in settings_table() if f"`{env}`" not in README]
    assert not missing


def test_the_settings_table_shows_the_code_defaults():
    """A default changed in config.py and not in the README fails here; the
    rows are regenerated with `python -c 'from stream_app.config import
    settings_markdown; print(settings_markdown())'`."""
    assert settings_markdown() in README


def test_readme_opens_with_the_two_commands():
    head = README[:1500]
    assert "make demo" in head and "make test" in head


def test_metric_names_follow_prometheus_conventions():
    for name, (kind, labels, _) in REFERENCE.items():
        assert name.startswith("churn_")
        assert (kind == "counter") == name.endswith("_total"), name
        assert "customer_id" not in labels
