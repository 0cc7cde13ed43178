"""One typed settings object, read from the environment and CLI flags.

Every tunable of the monitor lives here, with its env variable and its reason,
so that nothing else in the code carries a magic constant. CLI flags override
env variables, which override the defaults below (`Settings.load`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from typing import Any

DAY = 86400.0
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")  # Kafka security protocols
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")  # SASL mechanisms
MIN_KEY_BYTES = 16  # a model signing key shorter than this is refused
#: logreg: logistic regression warm-started as the rules; arf: a bounded forest;
#: linear: logistic regression learnt from zero; tree: a bounded Hoeffding
#: tree; select: rules, linear and tree side by side, the best one serving
#: (stream_app/risk/model.py builds them)
MODEL_KINDS = ("logreg", "arf", "linear", "tree", "select")


def _env(name: str) -> str:
    return "CHURNMON_" + name.upper()


@dataclass(frozen=True)
class Settings:
    # -- where things are -------------------------------------------------
    broker: str | None = field(default=None, metadata={"help": "kafka://host:port; none = start an embedded broker"})
    app_id: str = field(default="churnmon", metadata={"help": "Faust app id = Kafka consumer group and changelog prefix"})
    partitions: int = field(default=8, metadata={"help": "partition count of every topic the monitor creates"})
    web_host: str = field(default="127.0.0.1", metadata={"help": "address other workers reach this one at (lookups are forwarded to the owner); 'hostname' = this machine's host name"})
    web_bind: str | None = field(default=None, metadata={"help": "address /metrics and the lookup endpoint listen on (default: web_host; 0.0.0.0 in containers)"})
    web_port: int = field(default=6066, metadata={"help": "port of /metrics and the lookup endpoint"})
    data_dir: str = field(default="./churnmon-data", metadata={"help": "Faust data directory (table stores)"})
    store: str = field(default="memory://", metadata={"help": "table store: memory:// or rocksdb://"})
    rocksdb_write_buffer_mb: int = field(default=8, metadata={"help": "RocksDB store: memtable size per table partition (two of them at most); Faust's default of 3 x 64 MB per partition would hold gigabytes across 16 table partitions"})
    rocksdb_block_cache_mb: int = field(default=16, metadata={"help": "RocksDB store: read cache per table partition (Faust's default: 2 GB each)"})

    # -- churn definitions (DOMAIN.md: what churn is) ----------------------
    grace_days: float = field(default=14.0, metadata={"help": "a failed payment not recovered within this many days is involuntary churn"})
    inactivity_days: float = field(default=90.0, metadata={"help": "a non-contractual customer with no usage for this many days has lapsed"})
    trial_days: float = field(default=14.0, metadata={"help": "an unconverted trial expires this long after it started (not churn)"})
    billing_cycle_days: float = field(default=30.0, metadata={"help": "renewal cycle, for days-to-renewal"})
    windows_days: tuple[int, ...] = field(default=(30, 90), metadata={"help": "rolling KPI windows in days"})

    # -- event time -------------------------------------------------------
    allowed_lateness_s: float = field(default=3600.0, metadata={"help": "the event-time clock trails the highest event time seen by this much"})
    clock_tick_s: float = field(default=1.0, metadata={"help": "how often idle partitions are moved to the worker's clock (wall seconds)"})
    idle_partition_s: float = field(default=3.0, metadata={"help": "a partition with no input for this long (wall seconds) follows the worker's clock"})
    input_hold_max: int = field(default=20000, metadata={"help": "events a partition holds back at most while a slower input topic catches up (they are applied in event-time order across topics); beyond it the oldest is applied anyway"})
    dedupe_ids: int = field(default=8, metadata={"help": "event ids remembered per customer and input topic, to drop an event produced twice (redeliveries are dropped by source offset)"})

    # -- risk model and alerts (issue: online models on delayed labels) -------
    horizon_days: float = field(default=30.0, metadata={"help": "the target: churns within this many days"})
    snapshot_every_days: int = field(default=10, metadata={"help": "a live customer is observed (a label snapshot) once per this many days, and re-scored at that pace while silent and not near an alert"})
    model_kind: str = field(default="select", metadata={"help": "select (the rules, a logistic regression and a Hoeffding tree side by side; the best progressive-validation ROC AUC serves), or one model alone: logreg (logistic regression warm-started as the rules), linear (logistic regression from zero), tree (bounded Hoeffding tree), arf (bounded ARFClassifier, signed pickles)"})
    min_labels: int = field(default=500, metadata={"help": "labels (of both classes) the model needs before it replaces the rule-based score"})
    publish_every: int = field(default=1000, metadata={"help": "the trainer publishes a model snapshot after this many new labels ..."})
    publish_interval_s: float = field(default=2.0, metadata={"help": "... or this many wall seconds after the first unpublished label"})
    trainer_report_s: float = field(default=0.25, metadata={"help": "how often the worker that owns churn.training reads what its trainer process reports (labels learnt, quality) into /metrics"})
    winback_days: float = field(default=365.0, metadata={"help": "a lapsed purchase-only customer keeps a win-back probability (re-scored every snapshot_every_days, its snapshots labelled) for this many days after its last activity"})
    winback_bands: tuple[float, ...] = field(default=(0.1, 0.3), metadata={"help": "win-back probability band edges: low below the first, medium, high from the last (churn_winback_customers{band})"})
    bgnbd_min_buyers: int = field(default=50, metadata={"help": "purchase-only customers (with at least a fifth of them repeat buyers) a worker needs before it fits BG/NBD and scores them with it"})
    alert_upper: float = field(default=0.6, metadata={"help": "raise an alert when risk reaches this"})
    alert_lower: float = field(default=0.4, metadata={"help": "resolve an open alert when risk falls below this (hysteresis)"})
    alert_step: float = field(default=0.1, metadata={"help": "escalate when risk rises this much above the last alerted risk"})
    alert_cooldown_days: float = field(default=1.0, metadata={"help": "event time between two raise/escalate alerts of one customer"})
    alert_min_expected_loss: float = field(default=10.0, metadata={"help": "risk x MRR below this (or below the play's cost) is not alerted"})

    # -- input limits (bad input goes to churn.dlq) -------------------------
    max_event_bytes: int = field(default=65536, metadata={"help": "larger payloads are dead-lettered"})
    max_future_s: float = field(default=DAY, metadata={"help": "events further ahead of the wall clock are dead-lettered"})

    # -- source adapters (stream_app/ingest/sources: churn.source.stripe, .segment, .zendesk) --
    segment_customer: str = field(default="groupId", metadata={"help": "Segment calls: the customer is the account (groupId, or context.groupId) or the user (userId)"})
    segment_mapping_file: str | None = field(default=None, metadata={"help": "TOML file saying which Segment track events are sessions, purchases, ignored or renamed features (default: stream_app/ingest/sources/segment.toml)"})
    zendesk_customer: str = field(default="organization", metadata={"help": "Zendesk tickets: the customer is the organization or the requester (their external id when the webhook body carries one, else the Zendesk id)"})

    # -- Kafka / Faust tuning ------------------------------------------------
    rebalance_timeout_s: float = field(default=5.0, metadata={"help": "group rebalance timeout; low keeps joins fast"})
    session_timeout_s: float = field(default=10.0, metadata={"help": "consumer session timeout"})
    heartbeat_interval_s: float = field(default=1.0, metadata={"help": "consumer heartbeat interval"})
    event_loop: str = field(default="uvloop", metadata={"help": "uvloop (faster Faust machinery per event) or asyncio"})
    fetch_max_wait_ms: int = field(default=10, metadata={"help": "longest a fetch waits for new input; bounds event-to-alert latency on brokers that answer a fetch only when the wait runs out (the embedded one), costs one empty fetch per broker this often when idle (Faust's fixed value: 1500)"})
    producer_linger_ms: int = field(default=5, metadata={"help": "batch changelog and output messages this long"})
    batch_max_events: int = field(default=2000, metadata={"help": "the worker processes its input in batches of at most this many events ..."})
    batch_within_s: float = field(default=0.01, metadata={"help": "... or what arrived within this many seconds; a touched customer is scored and written once per batch"})
    batch_catchup_s: float = field(default=0.25, metadata={"help": "... but a batch keeps filling up to this many seconds while the broker already holds enough records beyond it to fill it: full batches through a backlog, small ones live (stream_app/runtime/batches.py)"})
    sweep_max_visits: int = field(default=50, metadata={"help": "silent customers visited per partition per batch at most while events arrive (the rest stay due): a day's sweep never holds a batch's alerts back (500: alert p99 342 ms at 1,500 events/s; 50: 238 ms, bench/latency.py)"})
    sweep_idle_visits: int = field(default=500, metadata={"help": "... and per partition per tick while it has no events to apply: a restore or a clock jump never blocks the worker in one long sweep"})
    rebuild_chunk: int = field(default=5000, metadata={"help": "customers per step when a partition's ledger and visit index are rebuilt from the table (the worker yields between steps)"})
    producer_buffer_max: int = field(default=2000, metadata={"help": "the worker takes no more input while Faust's producer buffer holds more records than this (backpressure)"})
    standby_replicas: int = field(default=1, metadata={"help": "Faust standby copies of each table partition on other workers: a failover skips most of the restore, but every worker replays the others' changelog writes (bench/scaling.py, 2 CPUs, 100,000 events: 2 workers 1.18x one with 1, 1.81x with 0, both filling the 2 CPUs). 0 is not the default: the scale-out exactness test lost events in 3 of 4 runs with it (docs/PERFORMANCE.md)"})
    producer_max_batch_size: int = field(default=16384, metadata={"help": "bytes per producer batch (Kafka's default)"})
    end_offsets_from_fetch: bool = field(default=False, metadata={"help": "read where a changelog ends from a fetch, not from ListOffsets (on for the embedded broker, whose ListOffsets answer lags a batch: stream_app/tools/broker.py)"})

    # -- security (stream_app/runtime/security.py); secrets are never shown ----------
    kafka_security_protocol: str = field(default="PLAINTEXT", metadata={"help": "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"})
    kafka_sasl_mechanism: str = field(default="PLAIN", metadata={"help": "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"})
    kafka_sasl_username: str | None = field(default=None, metadata={"help": "SASL user name"})
    kafka_sasl_password: str | None = field(default=None, repr=False, metadata={"help": "SASL password (secret: never logged)", "secret": True})
    kafka_ssl_cafile: str | None = field(default=None, metadata={"help": "CA bundle that signed the brokers' certificates (default: system CAs)"})
    kafka_ssl_certfile: str | None = field(default=None, metadata={"help": "client certificate for mutual TLS"})
    kafka_ssl_keyfile: str | None = field(default=None, metadata={"help": "the client certificate's private key"})
    kafka_ssl_key_password: str | None = field(default=None, repr=False, metadata={"help": "password of the private key (secret)", "secret": True})
    lookup_token: str | None = field(default=None, repr=False, metadata={"help": "if set, /customers/{id} requires 'Authorization: Bearer <token>' (secret)", "secret": True})
    lookup_token_file: str | None = field(default=None, metadata={"help": "file holding lookup_token, read at start (the compose stack's secret; --lookup-token-file)", "secret_file": "lookup_token"})
    lookup_insecure: bool = field(default=False, metadata={"help": "serve /customers/{id} without a token on a non-loopback address (refused otherwise; --lookup-insecure)"})
    model_signing_key: str | None = field(default=None, repr=False, metadata={"help": "HMAC-SHA256 key that signs model snapshots and verifies them on churn.models; required for model_kind arf; env or file only, never a flag (secret)", "secret": True})
    model_signing_key_file: str | None = field(default=None, metadata={"help": "file holding model_signing_key, read at start", "secret_file": "model_signing_key"})

    @classmethod
    def load(cls, **overrides: Any) -> "Settings":
        """Defaults < env (CHURNMON_*) < explicit overrides (CLI flags; None = not given)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(_env(f.name))
            if raw is not None and raw != "":
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        _read_secret_files(values)
        return cls(**values).checked()

    def checked(self) -> "Settings":
        problems = []
        if self.partitions < 1:
            problems.append(f"partitions must be >= 1 (got {self.partitions})")
        if not (0 < self.web_port < 65536):
            problems.append(f"web_port must be a TCP port (got {self.web_port})")
        if self.broker is not None and not self.broker.startswith(("kafka://", "aiokafka://")):
            problems.append(f"broker must look like kafka://host:port (got {self.broker!r})")
        for name in ("grace_days", "inactivity_days", "trial_days", "billing_cycle_days", "trainer_report_s"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0 (got {getattr(self, name)})")
        if not self.windows_days or any(w <= 0 for w in self.windows_days):
            problems.append(f"windows_days must be positive day counts (got {self.windows_days})")
        if self.winback_days < 0:
            problems.append(f"winback_days must be >= 0 (got {self.winback_days})")
        if list(self.winback_bands) != sorted(self.winback_bands) or any(not 0 < b < 1 for b in self.winback_bands) or len(self.winback_bands) != 2:
            problems.append(f"winback_bands must be two increasing probabilities in (0, 1) (got {self.winback_bands})")
        if self.snapshot_every_days < 1:
            problems.append(f"snapshot_every_days must be >= 1 (got {self.snapshot_every_days})")
        if self.model_kind not in MODEL_KINDS:
            problems.append(f"model_kind must be one of {', '.join(MODEL_KINDS)} (got {self.model_kind!r})")
        if not (0 <= self.alert_lower <= self.alert_upper <= 1):
            problems.append(f"need 0 <= alert_lower <= alert_upper <= 1 (got {self.alert_lower}, {self.alert_upper})")
        for name in ("sweep_max_visits", "sweep_idle_visits", "batch_max_events"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if not (0 < self.batch_within_s <= self.batch_catchup_s):
            problems.append(f"need 0 < batch_within_s <= batch_catchup_s (got {self.batch_within_s}, {self.batch_catchup_s})")
        if not (1 <= self.fetch_max_wait_ms <= 60000):
            problems.append(f"fetch_max_wait_ms must be 1..60000 (got {self.fetch_max_wait_ms}; 0 would spin on an idle topic)")
        if self.standby_replicas < 0:
            problems.append(f"standby_replicas must be >= 0 (got {self.standby_replicas})")
        if self.event_loop not in ("uvloop", "asyncio"):
            problems.append(f"event_loop must be uvloop or asyncio (got {self.event_loop!r})")
        if self.model_signing_key is not None and len(self.model_signing_key.encode()) < MIN_KEY_BYTES:
            problems.append(f"model_signing_key must be at least {MIN_KEY_BYTES} bytes (a random one: openssl rand -hex 32)")
        if self.store.split(":", 1)[0] not in ("memory", "rocksdb"):
            problems.append(f"store must be memory:// or rocksdb:// (got {self.store!r})")
        if self.segment_customer not in ("groupId", "userId"):
            problems.append(f"segment_customer must be groupId or userId (got {self.segment_customer!r})")
        if self.zendesk_customer not in ("organization", "requester"):
            problems.append(f"zendesk_customer must be organization or requester (got {self.zendesk_customer!r})")
        problems += _kafka_security_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes).checked()

    @staticmethod
    def env_name(name: str) -> str:
        return _env(name)


def _kafka_security_problems(s: Settings) -> list[str]:
    """What is inconsistent in the Kafka security settings (empty = fine);
    runtime/security.py turns consistent ones into client credentials."""
    out = []
    if s.kafka_security_protocol not in PROTOCOLS:
        out.append(f"kafka_security_protocol must be one of {', '.join(PROTOCOLS)} (got {s.kafka_security_protocol!r})")
    if s.kafka_sasl_mechanism not in MECHANISMS:
        out.append(f"kafka_sasl_mechanism must be one of {', '.join(MECHANISMS)} (got {s.kafka_sasl_mechanism!r})")
    if s.kafka_security_protocol.startswith("SASL") and not (s.kafka_sasl_username and s.kafka_sasl_password):
        out.append(f"kafka_security_protocol {s.kafka_security_protocol} needs kafka_sasl_username and kafka_sasl_password")
    if bool(s.kafka_ssl_certfile) != bool(s.kafka_ssl_keyfile):
        out.append("kafka_ssl_certfile and kafka_ssl_keyfile go together (a client certificate needs its key)")
    return out


def _parse(f: dataclasses.Field, raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if kind.startswith("bool"):
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if kind.startswith("tuple"):
            item = float if "float" in kind else int
            return tuple(item(x) for x in raw.split(",") if x.strip())
    except ValueError as exc:
        raise ValueError(f"{_env(f.name)}={raw!r} is not a valid {kind}") from exc
    return raw


def _read_secret_files(values: dict[str, Any]) -> None:
    """Fill a secret from its `*_file` setting (a file, so it never shows in
    a process list or a compose file) unless the secret itself was given."""
    for f in fields(Settings):
        target = f.metadata.get("secret_file")
        path = values.get(f.name)
        if target is None or path is None or values.get(target) is not None:
            continue
        try:
            secret = open(path, encoding="utf-8").read().strip()
        except OSError as exc:
            raise ValueError(f"{_env(f.name)}={path}: cannot read it ({exc.strerror or exc})") from exc
        if not secret:
            raise ValueError(f"{_env(f.name)}={path}: the file is empty")
        values[target] = secret


def settings_table() -> list[tuple[str, str, str, str]]:
    """(setting, env variable, default, meaning) rows, for the README and `--help`."""
    rows = []
    for f in fields(Settings):
        default = f.default
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        rows.append((f.name, _env(f.name), str(default), f.metadata.get("help", "")))
    return rows


def settings_markdown() -> str:
    """The README's settings table rows, exactly (tests/test_docs.py checks them)."""
    return "\n".join(f"| `{name}` | `{env}` | `{default}` | {meaning} |" for name, env, default, meaning in settings_table())
