"""The `churnmon` command: broker, worker, simulate, replay, demo.

Flags named in the issues (`--broker`, `--web-port`, `--port`, `--out`,
`--truth`) are a contract scripts rely on. Every command turns bad input into
one line on stderr naming the problem and exit status 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from ..config import Settings
from ..runtime.security import kafka_client_kwargs

cli = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Streaming churn monitor: Faust agents over Kafka, live churn/MRR metrics.")


class UserError(Exception):
    """A problem with what the user asked for: printed as one line, exit 2."""


def _settings(**overrides) -> Settings:
    try:
        return Settings.load(**overrides)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


# -- broker ---------------------------------------------------------------------


@cli.command()
def broker(port: int = typer.Option(9092, "--port", help="TCP port on 127.0.0.1")) -> None:
    """Run the embedded Kafka-compatible broker (Tansu, in memory) in the foreground."""
    from .broker import EmbeddedBroker

    b = EmbeddedBroker(port=port)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the broker child too
    try:
        b.start(quiet=True)
    except Exception as exc:
        raise UserError(f"could not start the embedded broker on 127.0.0.1:{port}: {exc}") from exc
    typer.echo(f"embedded broker listening on {b.url} (in memory; Ctrl-C stops it)")
    try:
        while b.process and b.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        b.stop()


# -- worker ---------------------------------------------------------------------


@cli.command()
def worker(
    broker: Optional[str] = typer.Option(None, "--broker", help="kafka://HOST:PORT (env CHURNMON_BROKER); none = embedded broker"),
    web_port: Optional[int] = typer.Option(None, "--web-port", help="port of /metrics and /customers/{id} (default 6066)"),
    web_host: Optional[str] = typer.Option(None, "--web-host", help="address to bind (default 127.0.0.1)"),
    partitions: Optional[int] = typer.Option(None, "--partitions", help="partition count of created topics (default 8)"),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Faust data directory"),
    app_id: Optional[str] = typer.Option(None, "--app-id", help="consumer group / changelog prefix"),
    loglevel: str = typer.Option("warn", "--loglevel", help="crit, error, warn, info, debug"),
    web_bind: Optional[str] = typer.Option(None, "--web-bind", help="address /metrics and the lookup listen on (default: --web-host)"),
    store: Optional[str] = typer.Option(None, "--store", help="table store: memory:// or rocksdb:// (one --data-dir per worker)"),
    security_protocol: Optional[str] = typer.Option(None, "--kafka-security-protocol", help="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
    sasl_mechanism: Optional[str] = typer.Option(None, "--kafka-sasl-mechanism", help="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
    sasl_username: Optional[str] = typer.Option(None, "--kafka-sasl-username"),
    sasl_password_file: Optional[Path] = typer.Option(None, "--kafka-sasl-password-file", help="file holding the SASL password (not a flag: flags show in ps)"),
    ssl_cafile: Optional[str] = typer.Option(None, "--kafka-ssl-cafile"),
    ssl_certfile: Optional[str] = typer.Option(None, "--kafka-ssl-certfile"),
    ssl_keyfile: Optional[str] = typer.Option(None, "--kafka-ssl-keyfile"),
    lookup_token_file: Optional[Path] = typer.Option(None, "--lookup-token-file", help="file holding the bearer token /customers/{id} requires"),
    lookup_insecure: bool = typer.Option(False, "--lookup-insecure", help="serve /customers/{id} without a token on a non-loopback address (refused otherwise)"),
) -> None:
    """Run one Faust worker: consume the input topics, serve /metrics.

    The model signing key (CHURNMON_MODEL_SIGNING_KEY_FILE) has no flag: flags show in ps."""
    settings = _settings(
        broker=broker, web_port=web_port, web_host=web_host, partitions=partitions, data_dir=data_dir, app_id=app_id,
        web_bind=web_bind, store=store, kafka_security_protocol=security_protocol, kafka_sasl_mechanism=sasl_mechanism,
        kafka_sasl_username=sasl_username, kafka_sasl_password=_secret(sasl_password_file, "--kafka-sasl-password-file"),
        kafka_ssl_cafile=ssl_cafile, kafka_ssl_certfile=ssl_certfile, kafka_ssl_keyfile=ssl_keyfile,
        lookup_token=_secret(lookup_token_file, "--lookup-token-file"), lookup_insecure=lookup_insecure or None,
    )
    run_worker(settings, loglevel)


def _secret(path: Optional[Path], flag: str) -> Optional[str]:
    """A secret read from a file (stripped), so it never appears in a process list."""
    if path is None:
        return None
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot read it ({exc.strerror or exc})") from exc
    if not value:
        raise UserError(f"{flag} {path}: the file is empty")
    return value


def run_worker(settings: Settings, loglevel: str = "warn") -> None:
    import faust

    from ..ingest import sources
    from ..runtime.agents import register
    from ..runtime.app import build_app
    from ..runtime.security import worker_problems
    from ..runtime.topics import ensure_topics
    from .broker import EMBEDDED_SETTINGS, EmbeddedBroker, free_port

    problems = worker_problems(settings) + sources.problems(settings)
    if problems:
        raise UserError("; ".join(problems))
    embedded = None
    broker_url = settings.broker
    if broker_url is None:
        embedded = EmbeddedBroker(port=free_port()).start()
        broker_url = embedded.url
        settings = settings.replace(**EMBEDDED_SETTINGS)
        typer.echo(f"no broker named (--broker or CHURNMON_BROKER): started an embedded broker on {broker_url}", err=True)
    try:
        try:
            created = asyncio.run(ensure_topics(settings, broker_url))
        except (OSError, asyncio.TimeoutError) as exc:
            raise UserError(f"cannot reach the broker at {broker_url}: {exc or type(exc).__name__}") from exc
        except Exception as exc:
            if "KafkaConnectionError" in type(exc).__name__ or "Unable to bootstrap" in str(exc):
                raise UserError(f"cannot reach the broker at {broker_url}: {exc}") from exc
            raise
        if created:
            typer.echo(f"created topics: {', '.join(created)}", err=True)
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        app = build_app(settings, broker_url)
        register(app, settings, broker_url)
        _quiet_kafka_logs()
        _use_event_loop(settings.event_loop)
        typer.echo(f"worker {settings.app_id}: metrics on http://{settings.web_host}:{settings.web_port}/metrics", err=True)
        faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
    finally:
        if embedded is not None:
            embedded.stop()


def _use_event_loop(name: str) -> None:
    """uvloop takes ~20 % off Faust's per-event asyncio machinery (issue 6)."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:  # not built for this platform: asyncio still works
            typer.echo("uvloop is not installed; using asyncio's event loop", err=True)
            return
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        asyncio.set_event_loop(asyncio.new_event_loop())


def _quiet_kafka_logs() -> None:
    # aiokafka logs every coordinator change at INFO/WARNING; they cost time
    # per event on the hot path and bury the worker's own messages.
    for name in ("aiokafka", "aiokafka.consumer.group_coordinator", "aiokafka.conn"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Faust's topic logs every send at DEBUG; the profile showed 5 % of the
    # worker's time building those records (issue 6), so it never goes below INFO
    logging.getLogger("faust.topics").setLevel(logging.INFO)


# -- simulate / replay -------------------------------------------------------------


@cli.command()
def simulate(
    scenario: str = typer.Option("default", "--scenario", help="population and what drives its churn: default (subscriptions, 10 % purchase-only; usage decay, support, price, payments), usage-decay (the default mechanisms, subscriptions only), support-trouble (tickets left open, low CSAT), payment-price (failed payments and a price rise on the pro plan midway), purchase-only (buyers with rhythms of their own)"),
    customers: int = typer.Option(2000, "--customers", min=1, help="initial population"),
    days: int = typer.Option(365, "--days", min=1, help="days of event time"),
    seed: int = typer.Option(42, "--seed"),
    start: str = typer.Option("2025-01-01T00:00:00Z", "--start", help="RFC 3339 start of event time"),
    out: Optional[Path] = typer.Option(None, "--out", help="write events to this JSONL file instead of Kafka"),
    truth: Optional[Path] = typer.Option(None, "--truth", help="write the ground truth (who churned, when, why) as JSONL"),
    broker: Optional[str] = typer.Option(None, "--broker", help="kafka://HOST:PORT (env CHURNMON_BROKER)"),
    rate: float = typer.Option(0.0, "--rate", min=0.0, help="events per wall second when producing (0 = as fast as possible)"),
    speed: float = typer.Option(0.0, "--speed", min=0.0, help="event-time seconds per wall second, e.g. 86400 = a day per second (instead of --rate)"),
    fmt: str = typer.Option("contract", "--format", help="contract (events for the input topics), or stripe, segment, zendesk: that system's share of the population as it publishes it, for its churn.source.* topic"),
) -> None:
    """Produce a realistic, seeded customer population's events (to Kafka or a file)."""
    from ..ingest.contract import parse_ts
    from .simulator import SCENARIOS, Simulation, write_jsonl
    from .simulator import scenario as make_scenario
    from .source_formats import FORMATS

    try:
        parse_ts(start)
    except ValueError as exc:
        raise UserError(f"--start {start!r} is not an RFC 3339 timestamp: {exc}") from exc
    if scenario not in SCENARIOS:
        raise UserError(f"--scenario {scenario!r}: one of {', '.join(SCENARIOS)}")
    if fmt != "contract" and fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: one of contract, {', '.join(FORMATS)}")
    cfg = make_scenario(scenario, customers=customers, days=days, seed=seed, start=start)
    if fmt != "contract":
        return _simulate_source(fmt, cfg, out, truth, broker, rate)
    if out is not None:
        n = write_jsonl(cfg, out, truth)
        typer.echo(f"wrote {n} events to {out}" + (f" and the ground truth to {truth}" if truth else ""), err=True)
        return
    settings = _settings(broker=broker)
    if settings.broker is None:
        raise UserError("simulate needs --broker kafka://HOST:PORT (or CHURNMON_BROKER), or --out FILE")
    sim = Simulation(cfg)
    from .producer import produce_events

    n = asyncio.run(produce_events(settings, sim.events(), rate=rate, speed=speed))
    if truth is not None:
        from .simulator import write_truth

        write_truth(sim.truth, truth)
    typer.echo(f"produced {n} events to {settings.broker}", err=True)


def _simulate_source(fmt: str, cfg, out: Optional[Path], truth: Optional[Path], broker: Optional[str], rate: float) -> None:
    """The population as one source system publishes it: JSONL records, or produced to its source topic."""
    import orjson

    from .simulator import Simulation, write_truth
    from .source_formats import TOPIC, render

    sim = Simulation(cfg)
    records = render(fmt, sim.events())
    if out is not None:
        with open(out, "wb") as f:
            n = sum(f.write(orjson.dumps(rec) + b"\n") > 0 for _, rec in records)
        where = str(out)
    else:
        settings = _settings(broker=broker)
        if settings.broker is None:
            raise UserError("simulate needs --broker kafka://HOST:PORT (or CHURNMON_BROKER), or --out FILE")
        from .producer import produce_records

        n = asyncio.run(produce_records(settings, TOPIC[fmt], records, rate=rate))
        where = f"{TOPIC[fmt]} on {settings.broker}"
    if truth is not None:
        write_truth(sim.truth, truth)
    typer.echo(f"wrote {n} {fmt} records to {where}" + (f" and the ground truth to {truth}" if truth else ""), err=True)


@cli.command()
def replay(
    file: Path = typer.Argument(..., help="JSONL file, one event per line"),
    broker: Optional[str] = typer.Option(None, "--broker", help="kafka://HOST:PORT (env CHURNMON_BROKER)"),
    rate: float = typer.Option(0.0, "--rate", min=0.0, help="events per wall second (0 = as fast as possible)"),
    speed: float = typer.Option(0.0, "--speed", min=0.0, help="event-time seconds per wall second, e.g. 86400 = a day per second"),
    strict: bool = typer.Option(False, "--strict", help="stop at the first invalid line instead of dead-lettering it"),
) -> None:
    """Produce events from a JSONL file in event-time order, validating each line first."""
    from .producer import ReplayError, produce_events, read_replay_file

    if not file.is_file():
        raise UserError(f"{file}: no such file")
    settings = _settings(broker=broker)
    if settings.broker is None:
        raise UserError("replay needs --broker kafka://HOST:PORT (or CHURNMON_BROKER)")
    try:
        events, invalid = read_replay_file(file, strict=strict)
    except ReplayError as exc:
        raise UserError(str(exc)) from exc
    n = asyncio.run(produce_events(settings, events, rate=rate, speed=speed, invalid=invalid, source=str(file)))
    msg = f"replayed {n} events from {file}"
    if invalid:
        msg += f"; {len(invalid)} invalid lines sent to churn.dlq (first: line {invalid[0][0]}: {invalid[0][1].detail})"
    typer.echo(msg, err=True)


# -- alerts ---------------------------------------------------------------------------


@cli.command()
def alerts(
    broker: Optional[str] = typer.Option(None, "--broker", help="kafka://HOST:PORT (env CHURNMON_BROKER)"),
    follow_new: bool = typer.Option(False, "--new", help="only alerts published from now on (default: from the beginning)"),
    state: Optional[str] = typer.Option(None, "--state", help="only raised, escalated or resolved"),
    idle: float = typer.Option(0.0, "--idle-exit", min=0.0, help="exit after this many seconds without an alert (0 = follow forever)"),
    as_json: bool = typer.Option(False, "--json", help="print the alert JSON instead of a readable line"),
) -> None:
    """Tail churn.alerts in a readable form."""
    import orjson

    from .alert_feed import follow, line

    settings = _settings(broker=broker)
    if settings.broker is None:
        raise UserError("alerts needs --broker kafka://HOST:PORT (or CHURNMON_BROKER)")
    if state is not None and state not in ("raised", "escalated", "resolved"):
        raise UserError(f"--state must be raised, escalated or resolved (got {state!r})")

    def show(a: dict) -> None:
        if state is None or a.get("state") == state:
            typer.echo(orjson.dumps(a).decode() if as_json else line(a))

    try:
        asyncio.run(follow(settings.broker, show, from_beginning=not follow_new, idle_timeout=idle or None,
                           client_kwargs=kafka_client_kwargs(settings)))
    except KeyboardInterrupt:
        pass


# -- dead letters --------------------------------------------------------------------

dlq_cli = typer.Typer(no_args_is_help=True, help="Inspect churn.dlq and re-publish dead-lettered events after a fix.")
cli.add_typer(dlq_cli, name="dlq")


def _dead_letters(broker: Optional[str], reason: Optional[str], topic: Optional[str]):
    from ..ingest.contract import REJECTION_REASONS, TOPICS
    from ..ingest.dead_letters import select
    from ..runtime.topics import TRAINING, bootstrap_servers
    from .dlq import read

    settings = _settings(broker=broker)
    if settings.broker is None:
        raise UserError("dlq needs --broker kafka://HOST:PORT (or CHURNMON_BROKER)")
    if reason is not None and reason not in REJECTION_REASONS:
        raise UserError(f"--reason must be one of {', '.join(sorted(REJECTION_REASONS))} (got {reason!r})")
    read_topics = (*TOPICS, TRAINING)
    if topic is not None and topic not in read_topics and not topic.endswith("-clock"):
        raise UserError(f"--topic must be one of {', '.join(read_topics)} or a clock topic <app_id>-clock (got {topic!r})")
    letters = asyncio.run(read(bootstrap_servers(settings.broker), client_kwargs=kafka_client_kwargs(settings)))
    return settings, select(letters, reason=reason, topic=topic)


@dlq_cli.command("list")
def dlq_list(
    broker: Optional[str] = typer.Option(None, "--broker", help="kafka://HOST:PORT (env CHURNMON_BROKER)"),
    reason: Optional[str] = typer.Option(None, "--reason", help="only this rejection reason"),
    topic: Optional[str] = typer.Option(None, "--topic", help="only records from this topic (an input, churn.training or <app_id>-clock)"),
    limit: int = typer.Option(20, "--limit", min=0, help="records to print after the summary (0 = summary only)"),
) -> None:
    """Summarise churn.dlq by reason and source, then print the newest records."""
    from ..ingest.dead_letters import line, summary

    _, letters = _dead_letters(broker, reason, topic)
    typer.echo(f"{len(letters)} dead-lettered records")
    for r, source, n in summary(letters):
        typer.echo(f"  {n:>7}  {r:<14} {source}")
    for d in letters[-limit:] if limit else []:
        typer.echo(line(d))


@dlq_cli.command("republish")
def dlq_republish(
    broker: Optional[str] = typer.Option(None, "--broker", help="kafka://HOST:PORT (env CHURNMON_BROKER)"),
    reason: Optional[str] = typer.Option(None, "--reason", help="only this rejection reason"),
    topic: Optional[str] = typer.Option(None, "--topic", help="only records from this input topic"),
    dry_run: bool = typer.Option(False, "--dry-run", help="say what would be re-published, send nothing"),
) -> None:
    """Send dead-lettered events back to their input topic, original bytes and key, after a fix."""
    from ..ingest.dead_letters import line
    from ..runtime.topics import bootstrap_servers
    from .dlq import republish

    settings, letters = _dead_letters(broker, reason, topic)
    ready = [d for d in letters if d.republishable]
    skipped = len(letters) - len(ready)
    note = f"; {skipped} came from replay files (no input topic): fix the file and replay it" if skipped else ""
    if dry_run:
        for d in ready:
            typer.echo(line(d))
        typer.echo(f"dry run: would re-publish {len(ready)} records{note}")
        return
    n = asyncio.run(republish(bootstrap_servers(settings.broker), ready, client_kwargs=kafka_client_kwargs(settings)))
    typer.echo(f"re-published {n} records to their input topics{note}")


# -- demo -------------------------------------------------------------------------


@cli.command()
def demo(
    customers: int = typer.Option(600, "--customers", min=1, help="simulated population (bounded: the embedded broker keeps every message in memory)"),
    days: int = typer.Option(365, "--days", min=1),
    seed: int = typer.Option(42, "--seed"),
    rate: float = typer.Option(800.0, "--rate", min=1.0, help="simulated events per wall second (about what one worker keeps up with here)"),
    web_port: int = typer.Option(6066, "--web-port"),
    seconds: float = typer.Option(0.0, "--seconds", min=0.0, help="stop after this long (0 = until Ctrl-C)"),
    plain: bool = typer.Option(False, "--plain", help="print figures line by line instead of a live screen"),
) -> None:
    """Embedded broker + worker + simulator in one command, with a live terminal view."""
    from ..runtime.children import die_with_parent, stop
    from ..runtime.topics import ensure_topics
    from .broker import EMBEDDED_ENV, EmbeddedBroker, free_port
    from .dashboard import run_view

    settings = _settings(web_port=web_port)
    # Ctrl-C and SIGTERM stop everything, even where SIGINT was inherited as
    # ignored (a job started in the background by a non-interactive shell)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    b = EmbeddedBroker(port=free_port()).start()
    children: list[subprocess.Popen] = []
    env = {**os.environ, **EMBEDDED_ENV, "CHURNMON_BROKER": b.url, "CHURNMON_WEB_PORT": str(web_port)}
    try:
        asyncio.run(ensure_topics(settings, b.url))
        py = sys.executable
        # broker, worker and simulator die with the demo, however it dies (children.py)
        children.append(subprocess.Popen([py, "-m", "stream_app", "worker", "--data-dir", f"./churnmon-data/demo-{os.getpid()}"], env=env, **die_with_parent()))
        children.append(
            subprocess.Popen(
                [py, "-m", "stream_app", "simulate", "--customers", str(customers), "--days", str(days), "--seed", str(seed), "--rate", str(rate)],
                env=env, **die_with_parent(),
            )
        )
        typer.echo(f"demo: broker {b.url}, metrics http://127.0.0.1:{web_port}/metrics (Ctrl-C stops everything)", err=True)
        from .alert_feed import AtRiskBoard

        board = AtRiskBoard(b.url).start()
        run_view(f"http://127.0.0.1:{web_port}/metrics", seconds=seconds, plain=plain, alive=lambda: children[0].poll() is None, board=board)
        board.stop()
        if children[0].poll() is not None:
            raise UserError(f"the worker exited with status {children[0].returncode} (its output is above)")
    except KeyboardInterrupt:
        pass
    finally:
        for child in reversed(children):
            stop(child, timeout=15)
        b.stop()
        typer.echo("demo stopped", err=True)


def main() -> None:
    import typer.main

    # aiokafka logs each failed connection attempt itself; the one-line error below says it
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    try:
        # the plain click command: typer's own wrapper prints a traceback box
        typer.main.get_command(cli).main(prog_name="churnmon", standalone_mode=False)
    except UserError as exc:
        typer.echo(f"churnmon: error: {exc}", err=True)
        raise SystemExit(2)
    except KeyboardInterrupt:
        raise SystemExit(130)
    except Exception as exc:
        if type(exc).__name__ in ("KafkaConnectionError", "KafkaTimeoutError", "NoBrokersAvailable"):
            typer.echo(f"churnmon: error: cannot reach the broker: {exc}", err=True)
            raise SystemExit(2)
        # usage errors (typer ships its own copy of click, so match the interface)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            typer.echo(f"churnmon: error: {exc.format_message()}", err=True)
            raise SystemExit(exc.exit_code or 2)
        if type(exc).__name__ == "Abort":
            raise SystemExit(130)
        raise
