"""docker-compose.yml and docker/Dockerfile, checked without a Docker engine.

- the compose file against the Compose Specification's JSON Schema (vendored:
  see compose-spec.SOURCE.md), plus what the stack needs: KRaft Kafka, a
  scalable worker service, the `sim` profile, pinned images, existing bind
  mounts, Prometheus targets that are compose services;
- the topic-init script, run with bash against a stand-in kafka-topics.sh:
  it must create every topic the worker uses (stream_app.runtime.topics), with the
  worker's partition count and topic configs;
- hadolint-style rules for the Dockerfile, as plain assertions.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from stream_app.config import Settings
from stream_app.runtime.topics import all_topics

from tests.monitoring.tools import REPO, load_yaml

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
SCHEMA = Path(__file__).resolve().with_name("compose-spec.schema.json")
# Topics of the at-risk alerts and the model (churn.alerts, churn.training, churn.models): always created.
FUTURE_TOPICS = {"churn.alerts", "churn.training", "churn.models"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} / ${VAR-default} / ${VAR} with an empty environment."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)


# -- the compose file ---------------------------------------------------------------


def test_compose_matches_the_compose_specification(compose):
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    errors = sorted(Draft202012Validator(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_vendored_schema_is_the_recorded_one():
    import hashlib

    source = SCHEMA.with_name("compose-spec.SOURCE.md").read_text(encoding="utf-8")
    digest = hashlib.sha256(SCHEMA.read_bytes()).hexdigest()
    assert digest in source, "compose-spec.schema.json changed: update compose-spec.SOURCE.md"


def test_services(compose):
    services = compose["services"]
    assert {"kafka", "topic-init", "worker", "simulator", "kafka-exporter", "prometheus", "alertmanager", "grafana"} <= set(services)
    assert not any("zookeeper" in name for name in services)


def test_kafka_runs_in_kraft_mode(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "healthcheck" in kafka


def test_workers_scale(compose):
    worker = compose["services"]["worker"]
    assert "container_name" not in worker, "a fixed container name breaks --scale"
    assert "ports" not in worker, "a published host port breaks --scale; Prometheus reaches workers on the compose network"
    env = worker["environment"]
    assert env["CHURNMON_WEB_BIND"] == "0.0.0.0"  # listen on every interface in the container
    assert env["CHURNMON_WEB_HOST"] == "hostname"  # advertise the container's name: lookups are forwarded
    assert env["CHURNMON_BROKER"] == "kafka://kafka:9092"
    assert worker["build"]["dockerfile"] == "docker/Dockerfile"
    assert (REPO / worker["build"]["context"] / worker["build"]["dockerfile"]).is_file()
    assert worker["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
    # the settings the worker will run with are valid
    Settings(broker=env["CHURNMON_BROKER"], web_host=env["CHURNMON_WEB_HOST"], web_port=int(env["CHURNMON_WEB_PORT"]),
             partitions=int(env["CHURNMON_PARTITIONS"]), data_dir=env["CHURNMON_DATA_DIR"]).checked()


def test_workers_read_the_lookup_token_and_signing_key_from_secret_files(compose, tmp_path):
    from stream_app.runtime.security import worker_problems

    worker = compose["services"]["worker"]
    env = worker["environment"]
    mounted = {name: f"/run/secrets/{name}" for name in worker["secrets"]}
    assert env["CHURNMON_LOOKUP_TOKEN_FILE"] in mounted.values()
    assert env["CHURNMON_MODEL_SIGNING_KEY_FILE"] in mounted.values()
    inline = {k for k in env if ("TOKEN" in k or "KEY" in k) and not k.endswith("_FILE")}
    assert not inline, f"secrets go in files, not in the compose environment: {inline}"
    for name in worker["secrets"]:
        source = interpolate(compose["secrets"][name]["file"])
        assert source.startswith("./secrets/"), source
    # `make secrets` writes them; with them the worker starts on 0.0.0.0, without them it refuses
    secrets_dir = tmp_path / "secrets"
    done = subprocess.run(["make", "-s", "secrets", f"SECRETS={secrets_dir}"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    files = {f.name: f.read_text().strip() for f in secrets_dir.iterdir()}
    assert set(files) == {"lookup_token", "model_signing_key"} and all(re.fullmatch(r"[0-9a-f]{64}", v) for v in files.values())
    base = Settings(web_bind=env["CHURNMON_WEB_BIND"], web_host=env["CHURNMON_WEB_HOST"])
    assert worker_problems(base.replace(lookup_token=files["lookup_token"], model_signing_key=files["model_signing_key"])) == []
    assert worker_problems(base)
    assert "secrets/" in (REPO / ".gitignore").read_text()


def test_simulator_is_an_optional_profile(compose):
    sim = compose["services"]["simulator"]
    assert sim["profiles"] == ["sim"]
    assert sim["command"][:2] == ["churnmon", "simulate"]
    assert sim["environment"]["CHURNMON_BROKER"] == "kafka://kafka:9092"
    assert all("profiles" not in s for name, s in compose["services"].items() if name != "simulator")


def test_images_are_pinned(compose):
    for name, service in compose["services"].items():
        image = interpolate(service["image"])
        assert "@sha256:" in image or re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"{name}: image {image!r} has no tag"
        tag = image.rsplit(":", 1)[-1]
        assert tag not in ("latest", "stable", "main", "master"), f"{name}: floating tag {image!r}"


def test_bind_mounts_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = interpolate(volume).split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: mounts {source}, which does not exist"


def test_prometheus_scrapes_the_compose_services(compose):
    config = load_yaml(REPO / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    (sd,) = jobs["churnmon"]["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["type"] == "A"
    assert str(sd["port"]) == compose["services"]["worker"]["environment"]["CHURNMON_WEB_PORT"]
    assert jobs["kafka-exporter"]["static_configs"][0]["targets"] == ["kafka-exporter:9308"]
    assert "--kafka.server=kafka:9092" in compose["services"]["kafka-exporter"]["command"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./prometheus:/etc/prometheus:ro" in mounts


def test_alertmanager_and_grafana_get_their_config(compose):
    am = compose["services"]["alertmanager"]
    assert any(interpolate(v).startswith("./alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml") for v in am["volumes"])
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in am["command"]
    grafana = compose["services"]["grafana"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (REPO / "grafana" / "dashboards" / Path(home).name).is_file()


# -- the topic-init script ---------------------------------------------------------------


def _run_topic_init(compose: dict, tmp_path: Path) -> list[list[str]]:
    """Run the init service's script with bash; a stand-in kafka-topics.sh records its arguments."""
    service = compose["services"]["topic-init"]
    assert service["entrypoint"][0] == "/bin/bash"
    script = service["command"][0].replace("$$", "$")
    log = tmp_path / "calls.jsonl"
    stub = tmp_path / "kafka-topics.sh"
    stub.write_text(f'#!/usr/bin/env python3\nimport json, sys\nopen({str(log)!r}, "a").write(json.dumps(sys.argv[1:]) + "\\n")\n')
    stub.chmod(0o755)
    script = script.replace("/opt/kafka/bin/kafka-topics.sh", shlex.quote(str(stub)))
    env = {"PATH": os.environ["PATH"], **{k: str(v) for k, v in service["environment"].items()}}
    proc = subprocess.run(["bash", *service["entrypoint"][1:], script], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


def _created(calls: list[list[str]]) -> dict[str, dict]:
    """topic -> {'partitions': n, 'replication': n, 'configs': {k: v}} from kafka-topics.sh --create calls."""
    out = {}
    for args in calls:
        if "--create" not in args:
            continue
        assert "--if-not-exists" in args, "init must be re-runnable"
        it = iter(args)
        topic, info = None, {"configs": {}}
        for a in it:
            if a == "--topic":
                topic = next(it)
            elif a == "--partitions":
                info["partitions"] = int(next(it))
            elif a == "--replication-factor":
                info["replication"] = int(next(it))
            elif a == "--config":
                k, v = next(it).split("=", 1)
                info["configs"][k] = v
            elif a == "--bootstrap-server":
                assert next(it) == "kafka:9092"
        out[topic] = info
    return out


def _wanted(settings: Settings) -> dict[str, tuple[int, dict]]:
    """stream_app.runtime.topics.all_topics as name -> (partitions, configs)."""
    out = {}
    for name, spec in all_topics(settings).items():
        out[name] = spec if isinstance(spec, tuple) else (settings.partitions, spec)
    return out


def test_topic_init_creates_every_topic_the_app_uses(compose, tmp_path):
    created = _created(_run_topic_init(compose, tmp_path))
    env = compose["services"]["worker"]["environment"]
    settings = Settings(app_id=env.get("CHURNMON_APP_ID", Settings.app_id), partitions=int(env.get("CHURNMON_PARTITIONS", Settings.partitions)))
    assert compose["services"]["topic-init"]["environment"]["PARTITIONS"] == str(settings.partitions)
    wanted = _wanted(settings)
    missing = set(wanted) - set(created)
    assert not missing, f"topic-init does not create {sorted(missing)}"
    for topic, (partitions, configs) in wanted.items():
        assert created[topic]["partitions"] == partitions, f"{topic}: {created[topic]['partitions']} partitions, the worker wants {partitions}"
        assert created[topic]["replication"] == 1
        assert configs.items() <= created[topic]["configs"].items(), f"{topic}: configs {configs} missing"
    assert FUTURE_TOPICS <= set(created)


# -- the Dockerfile (hadolint-style) ---------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    lines, buf = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        lines.append(buf)
        buf = ""
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return _instructions(DOCKERFILE)


def test_base_images_are_pinned_slim_python(dockerfile):
    froms = [args.split()[0] for op, args in dockerfile if op == "FROM"]
    assert froms
    for image in froms:
        assert ":" in image and not image.endswith(":latest"), f"unpinned base {image}"  # DL3006 / DL3007
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), f"base must be a pinned python:3.11.x-slim: {image}"


def test_runs_as_non_root(dockerfile):
    users = [args for op, args in dockerfile if op == "USER"]
    assert users, "no USER: the container would run as root"  # DL3002
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"last USER is {users[-1]}"
    last_from = max(i for i, (op, _) in enumerate(dockerfile) if op == "FROM")
    assert any(op == "USER" for op, _ in dockerfile[last_from:]), "USER must be set in the final stage"


def test_healthcheck_hits_healthz(dockerfile):
    checks = [args for op, args in dockerfile if op == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "http://127.0.0.1:%s/healthz" in checks[0] and "'6066'" in checks[0]


def test_no_add_of_urls_and_copy_sources_exist(dockerfile):
    for op, args in dockerfile:
        assert op != "ADD" or not re.search(r"https?://", args), "ADD of a URL: use curl/pip with checks"  # DL3020
        assert op != "ADD", "use COPY for local files"  # DL3020
        if op == "COPY" and "--from=" not in args:
            *sources, _dest = args.split()
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"


def test_pip_and_apt_hygiene(dockerfile):
    env = " ".join(args for op, args in dockerfile if op == "ENV")
    for op, args in dockerfile:
        if op != "RUN":
            continue
        assert "sudo " not in args  # DL3004
        if "pip install" in args:
            assert "--no-cache-dir" in args or "PIP_NO_CACHE_DIR=1" in env  # DL3042
        if "apt-get install" in args:
            assert "--no-install-recommends" in args and "rm -rf /var/lib/apt/lists" in args  # DL3015, DL3009
        assert "apt-get upgrade" not in args and "dist-upgrade" not in args  # DL3005
    for op, args in dockerfile:
        if op == "WORKDIR":
            assert args.startswith("/"), "WORKDIR must be absolute"  # DL3000


def test_cmd_runs_the_worker_in_exec_form(dockerfile):
    cmds = [args for op, args in dockerfile if op == "CMD"]
    assert json.loads(cmds[-1]) == ["churnmon", "worker"]
    env = " ".join(args for op, args in dockerfile if op == "ENV")
    assert "CHURNMON_WEB_BIND=0.0.0.0" in env and "CHURNMON_WEB_HOST=hostname" in env and "CHURNMON_SCHEMA_DIR=/app/schemas" in env
    assert any(op == "EXPOSE" and "6066" in args for op, args in dockerfile)


def test_dockerignore_keeps_what_the_build_copies(dockerfile):
    ignore = [line for line in DOCKERFILE.with_name("Dockerfile.dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert ignore[0] == "*", "start from an empty context and allow what the build needs"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for op, args in dockerfile:
        if op == "COPY" and "--from=" not in args:
            *sources, _dest = args.split()
            for source in sources:
                assert source.rstrip("/") in allowed, f"COPY {source} is excluded by Dockerfile.dockerignore"
