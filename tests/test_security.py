"""Kafka TLS/SASL settings reach Faust and every other client; secrets are never shown."""

from __future__ import annotations

import logging

import faust
import pytest

from stream_app.runtime.app import build_app
from stream_app.config import Settings, settings_table
from stream_app.runtime.security import bearer_ok, faust_credentials, kafka_client_kwargs, lookup_denied, redacted, signing_key, worker_problems

SECRET = "hunter2-do-not-print"


def sasl(**more) -> Settings:
    return Settings.load(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
                         kafka_sasl_username="churnmon", kafka_sasl_password=SECRET, **more)


def test_plaintext_is_the_default():
    assert faust_credentials(Settings()) is None
    assert kafka_client_kwargs(Settings()) == {"security_protocol": "PLAINTEXT"}


def test_sasl_reaches_faust_and_the_tools_alike():
    s = sasl()
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SASLCredentials) and creds.mechanism.value == "SCRAM-SHA-512"
    kw = kafka_client_kwargs(s)
    assert kw["security_protocol"] == "SASL_PLAINTEXT" and kw["sasl_plain_username"] == "churnmon" and kw["sasl_plain_password"] == SECRET
    app = build_app(s, "kafka://127.0.0.1:9092")
    assert app.conf.broker_credentials.username == "churnmon" and app.conf.broker_credentials.password == SECRET


def test_sasl_ssl_verifies_with_system_cas():
    kw = kafka_client_kwargs(sasl().replace(kafka_security_protocol="SASL_SSL"))
    assert kw["security_protocol"] == "SASL_SSL" and kw["ssl_context"].verify_mode.name == "CERT_REQUIRED"


def test_ssl_alone():
    kw = kafka_client_kwargs(Settings(kafka_security_protocol="SSL"))
    assert kw["security_protocol"] == "SSL" and kw["ssl_context"].check_hostname


def test_env_reaches_the_settings(monkeypatch):
    monkeypatch.setenv("CHURNMON_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CHURNMON_KAFKA_SASL_USERNAME", "u")
    monkeypatch.setenv("CHURNMON_KAFKA_SASL_PASSWORD", SECRET)
    s = Settings.load()
    assert (s.kafka_security_protocol, s.kafka_sasl_username, s.kafka_sasl_password) == ("SASL_SSL", "u", SECRET)


@pytest.mark.parametrize("changes, says", [
    ({"kafka_security_protocol": "SASL_PLAINTEXT"}, "needs kafka_sasl_username and kafka_sasl_password"),
    ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol must be one of"),
    ({"kafka_sasl_mechanism": "GSSAPI"}, "kafka_sasl_mechanism must be one of"),
    ({"kafka_ssl_certfile": "/c.pem"}, "kafka_ssl_certfile and kafka_ssl_keyfile go together"),
])
def test_inconsistent_security_settings_are_named(changes, says):
    with pytest.raises(ValueError, match=says):
        Settings.load(**changes)


def test_secrets_never_appear_in_repr_help_or_errors(caplog):
    s = sasl(lookup_token=SECRET + "-token", kafka_ssl_key_password=SECRET + "-key")
    assert SECRET not in repr(s) and SECRET not in str(s)
    assert all(SECRET not in " ".join(row) for row in settings_table())
    with pytest.raises(ValueError) as err:
        s.replace(kafka_sasl_mechanism="NOPE")
    assert SECRET not in str(err.value)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("stream_app").info("settings: %s", s)
    assert SECRET not in caplog.text
    assert redacted(s.kafka_sasl_password) == "<set>" and redacted(None) == "<not set>"


def test_bearer_token():
    assert bearer_ok(None, None) and bearer_ok("", "whatever")
    assert bearer_ok("t0k", "Bearer t0k")
    assert not bearer_ok("t0k", None) and not bearer_ok("t0k", "Bearer t0") and not bearer_ok("t0k", "t0k") and not bearer_ok("t0k", "Basic t0k")


def test_raw_table_values_need_a_token_always():
    assert lookup_denied(None, None) is None  # loopback default: open
    assert lookup_denied(None, None, raw=True)[0] == 403
    assert lookup_denied(None, "Bearer anything", raw=True)[0] == 403
    assert lookup_denied("t0k", "Bearer t0k", raw=True) is None
    assert lookup_denied("t0k", "Bearer nope", raw=True)[0] == 401


@pytest.mark.parametrize("changes, refused", [
    ({}, False),
    ({"web_bind": "0.0.0.0"}, True),
    ({"web_host": "10.1.2.3"}, True),
    ({"web_host": "hostname"}, True),
    ({"web_bind": "::1"}, False),
    ({"web_bind": "0.0.0.0", "lookup_token": "t0k"}, False),
    ({"web_bind": "0.0.0.0", "lookup_insecure": True}, False),
])
def test_a_reachable_lookup_needs_a_token_or_an_explicit_insecure(changes, refused):
    problems = worker_problems(Settings(**changes))
    assert bool(problems) == refused, problems
    assert all("t0k" not in p for p in problems)


def test_pickled_model_kinds_need_the_signing_key():
    assert worker_problems(Settings(model_kind="arf"))
    assert not worker_problems(Settings(model_kind="arf", model_signing_key="k" * 32))
    assert signing_key(Settings()) is None and signing_key(Settings(model_signing_key="k" * 32)) == b"k" * 32


def test_secrets_come_from_files_and_stay_hidden(tmp_path, monkeypatch):
    (tmp_path / "token").write_text(SECRET + "\n")
    (tmp_path / "key").write_text("k" * 40)
    monkeypatch.setenv("CHURNMON_LOOKUP_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("CHURNMON_MODEL_SIGNING_KEY_FILE", str(tmp_path / "key"))
    s = Settings.load()
    assert s.lookup_token == SECRET and s.model_signing_key == "k" * 40
    assert SECRET not in repr(s) and "k" * 40 not in repr(s)
    (tmp_path / "empty").write_text("\n")
    monkeypatch.setenv("CHURNMON_MODEL_SIGNING_KEY_FILE", str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="the file is empty"):
        Settings.load()
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Settings.load(model_signing_key="short")
