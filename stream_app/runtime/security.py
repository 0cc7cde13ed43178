"""Kafka TLS/SASL from settings, the lookup endpoint's bearer token, and
what a worker refuses to start with.

One place turns the `kafka_*` settings into Faust credentials; every other
Kafka client of the monitor (the topic creator, the model feed, `replay`,
`alerts`, `dlq`) gets the same connection arguments from Faust's own mapping
(`credentials_to_aiokafka_auth`), so a cluster that works for the worker
works for the tools.

Secrets (SASL password, key password, lookup token) are fields with
`repr=False` in `Settings` and never appear in a log line, `--help` default
or error message; `redacted` is what may be shown of them.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
import ssl
from typing import Any

from ..config import Settings


def ssl_context(s: Settings) -> ssl.SSLContext | None:
    """A verifying TLS context for SSL and SASL_SSL (system CAs unless a CA file is named)."""
    if not s.kafka_security_protocol.endswith("SSL"):
        return None
    ctx = ssl.create_default_context(cafile=s.kafka_ssl_cafile or None)
    if s.kafka_ssl_certfile:
        ctx.load_cert_chain(s.kafka_ssl_certfile, s.kafka_ssl_keyfile, password=s.kafka_ssl_key_password or None)
    return ctx


def faust_credentials(s: Settings) -> Any:
    """What `faust.App(broker_credentials=...)` takes; None for PLAINTEXT."""
    import faust

    protocol = s.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(s))
    return faust.SASLCredentials(
        username=s.kafka_sasl_username, password=s.kafka_sasl_password,
        ssl_context=ssl_context(s), mechanism=s.kafka_sasl_mechanism,
    )


def kafka_client_kwargs(s: Settings) -> dict[str, Any]:
    """aiokafka constructor arguments for the same connection the worker uses."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    return dict(credentials_to_aiokafka_auth(faust_credentials(s)))


def redacted(secret: str | None) -> str:
    """How a secret may appear anywhere people read: set or not, never its value."""
    return "<set>" if secret else "<not set>"


def bearer_ok(token: str | None, authorization: str | None) -> bool:
    """The lookup endpoint's check: no token configured = open (loopback by
    default); otherwise `Authorization: Bearer <token>`, compared in constant
    time.

    >>> bearer_ok(None, None), bearer_ok("s3cret", "Bearer s3cret"), bearer_ok("s3cret", "Bearer nope")
    (True, True, False)
    """
    if not token:
        return True
    if not authorization or not authorization.startswith("Bearer "):
        return False
    return hmac.compare_digest(authorization[len("Bearer "):].encode(), token.encode())


def lookup_denied(token: str | None, authorization: str | None, raw: bool = False) -> tuple[int, str] | None:
    """Why a lookup request is refused (HTTP status, message), or None.

    Every lookup needs the token when one is set. The raw table value
    (`?raw=1`, for debugging) needs it always: with no token configured it
    is not served at all.

    >>> lookup_denied(None, None), lookup_denied("s3cret", "Bearer s3cret", raw=True)
    (None, None)
    >>> lookup_denied("s3cret", None)[0], lookup_denied(None, None, raw=True)[0]
    (401, 403)
    """
    if not bearer_ok(token, authorization):
        return 401, "this endpoint needs Authorization: Bearer <token> (CHURNMON_LOOKUP_TOKEN_FILE)"
    if raw and not token:
        return 403, "?raw=1 is served only by a worker with a lookup token (CHURNMON_LOOKUP_TOKEN_FILE)"
    return None


def is_loopback(host: str) -> bool:
    """Whether an address only this machine can reach.

    >>> [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "", "10.0.0.7")]
    [True, True, True, False, False, False]
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: whatever it resolves to, others may reach it
        return False


def bind_address(s: Settings) -> str:
    """The address /metrics and the lookup listen on (as `app.build_app` binds it)."""
    advertised = socket.gethostname() if s.web_host == "hostname" else s.web_host
    return s.web_bind or advertised


def worker_problems(s: Settings) -> list[str]:
    """What a worker refuses to start with (empty = fine).

    - the lookup on a non-loopback address without a token serves every
      customer's state to whoever reaches the port, unless the operator
      says so explicitly (`--lookup-insecure`);
    - a model kind whose snapshots are Python objects (pickles) is published
      and restored only signed, so it needs the signing key.
    """
    from ..risk.snapshots import PICKLED_KINDS

    out = []
    bind = bind_address(s)
    if not s.lookup_token and not s.lookup_insecure and not is_loopback(bind):
        out.append(f"the lookup endpoint would serve every customer's state on {bind or 'every address'}:{s.web_port} "
                   "without a token: give it one (CHURNMON_LOOKUP_TOKEN_FILE or --lookup-token-file), bind to 127.0.0.1, "
                   "or pass --lookup-insecure")
    if s.model_kind in PICKLED_KINDS and not s.model_signing_key:
        out.append(f"model_kind {s.model_kind} publishes signed snapshots: set CHURNMON_MODEL_SIGNING_KEY_FILE "
                   "(or CHURNMON_MODEL_SIGNING_KEY) to a random key shared by every worker")
    return out


def signing_key(s: Settings) -> bytes | None:
    """The model signing key as bytes (None = no key configured)."""
    return s.model_signing_key.encode() if s.model_signing_key else None
