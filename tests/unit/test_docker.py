"""docker/: the compose file and the Dockerfiles, checked without a container engine.

Nothing here builds an image or starts a container (CI has no engine). The compose file is
validated against docker/compose-subset.schema.json (and against the official Compose
Specification schema when one is vendored at docker/compose-spec.schema.json), then read for
what a schema cannot see: services that exist, loopback-only ports, healthchecks behind
`service_healthy`, and commands that the installed callqa / mlflow / prefect really have.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
SCHEMAS = [DOCKER / "compose-subset.schema.json", DOCKER / "compose-spec.schema.json"]
CALLQA_SERVICES = {"mlflow", "mlflow-init", "prefect-server", "prefect-worker", "callqa-serve"}
EXPECTED = {"postgres", "minio", "minio-init"} | CALLQA_SERVICES
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.mark.parametrize("schema_path", SCHEMAS, ids=lambda p: p.name)
def test_compose_matches_schema(compose, schema_path):
    if not schema_path.is_file():
        pytest.skip(f"{schema_path.name} is not vendored")
    schema = json.loads(schema_path.read_text())
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    errors = sorted(validator(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_subset_schema_rejects_typos(compose):
    """The schema is strict: a misspelt key or a wrong depends_on condition fails."""
    schema = json.loads(SCHEMAS[0].read_text())
    bad = json.loads(json.dumps(compose))
    bad["services"]["postgres"]["healthcheck"]["intervall"] = "5s"
    bad["services"]["mlflow"]["depends_on"]["postgres"]["condition"] = "healthy"
    bad["services"]["minio"]["ports"] = ["127.0.0.1:9000:9000", "127.0.0.1:9000:9000"]
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(bad))
    assert len(errors) >= 3


def test_services_and_images(services):
    assert set(services) == EXPECTED
    for name, svc in services.items():
        assert svc.get("image") or svc.get("build"), f"{name}: neither image nor build"
    for name in CALLQA_SERVICES:  # one image, built from docker/Dockerfile
        svc = services[name]
        assert svc["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}, name
        assert svc["image"] == services["callqa-serve"]["image"], name
        context = (COMPOSE.parent / svc["build"]["context"]).resolve()
        assert (context / svc["build"]["dockerfile"]).is_file()


def test_published_ports_bind_loopback(services):
    published = 0
    for name, svc in services.items():
        for port in svc.get("ports", []):
            published += 1
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port}"
    assert published >= 5


def test_depends_on_targets(services):
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        for target, cond in deps.items() if isinstance(deps, dict) else ():
            assert target in services and target != name, f"{name} -> {target}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            if cond["condition"] == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} is not one-shot"
    # no cycles: a topological order exists
    order, pending = [], dict(services)
    while pending:
        ready = [n for n, s in pending.items() if set(s.get("depends_on", {})) <= set(order)]
        assert ready, f"depends_on cycle among {sorted(pending)}"
        order += ready
        for n in ready:
            del pending[n]


def test_variables_are_documented(compose):
    """Every ${VAR} of the compose file is in docker/.env.example (set or commented)."""
    code = [ln for ln in COMPOSE.read_text().splitlines() if not ln.lstrip().startswith("#")]
    used = set(VAR.findall("\n".join(code)))
    example = (DOCKER / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, flags=re.M))
    assert used - listed == set()
    secrets = re.findall(r"^([A-Z0-9_]*(?:PASSWORD|SECRET)[A-Z0-9_]*)=(.*)$", example, re.M)
    assert secrets and all(v.startswith("change-me") for _, v in secrets)


def _argv(command) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def _options(app, path: list[str]) -> set[str]:
    """Option names of a Typer/Click command group's subcommand, without running it."""
    import typer.main

    cmd = typer.main.get_command(app)
    for word in path:
        cmd = cmd.commands[word]  # KeyError: no such subcommand
    return {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}


def _check_argv(argv: list[str], options: set[str]) -> None:
    for word in argv:
        if word.startswith("-"):
            assert word.split("=")[0] in options, f"unknown option {word}: {argv}"


def test_callqa_commands_exist(services):
    from callqa.cli import app

    assert _argv(services["callqa-serve"]["command"])[:2] == ["callqa", "serve"]
    argv = _argv(services["callqa-serve"]["command"])
    _check_argv(argv[2:], _options(app, ["serve"]))
    dockerfile_cmd = _dockerfile_cmd(DOCKER / "Dockerfile")
    assert dockerfile_cmd[:2] == ["callqa", "serve"]
    _check_argv(dockerfile_cmd[2:], _options(app, ["serve"]))
    # The Optuna storage that docker/README.md tells `callqa tune` to use.
    assert "--storage" in _options(app, ["tune"])


@pytest.fixture(scope="module")
def cli_help(services, tmp_path_factory) -> dict[str, str]:
    """`--help` of the mlflow / prefect subcommands the compose file runs, from the installed
    packages, in three processes at once (each takes 2-6 s to import on 2 cores)."""
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home")),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    prefect = "import sys; from prefect.cli import app; sys.argv = sys.argv[1:]; app()"
    runs = {
        "mlflow server": [sys.executable, "-m", "mlflow", "server", "--help"],
        "prefect server start": [sys.executable, "-c", prefect, "prefect", "server", "start"],
        "prefect worker start": [sys.executable, "-c", prefect, "prefect", "worker", "start"],
    }
    procs = {
        key: subprocess.Popen(
            argv + (["--help"] if key.startswith("prefect") else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for key, argv in runs.items()
    }
    out = {}
    for key, proc in procs.items():
        out[key], _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{key} --help: {out[key][-2000:]}"
    return out


def _check_help(argv: list[str], n_words: int, help_text: str) -> None:
    for word in argv[n_words:]:
        if word.startswith("-"):
            pattern = rf"(^|[\s,│]){re.escape(word)}([\s,=]|$)"
            assert re.search(pattern, help_text, re.M), f"{argv[:n_words]}: no option {word}"


# The two tests below import MLflow and Prefect (2-15 s, with the machine's load): `slow`.
@pytest.mark.slow
def test_mlflow_server_command(services, cli_help):
    svc = services["mlflow"]
    argv = _argv(svc["command"])
    assert argv[:2] == ["mlflow", "server"]
    _check_help(argv, 2, cli_help["mlflow server"])
    args = dict(zip(argv[2::2], argv[3::2], strict=False))
    assert args["--backend-store-uri"].startswith("postgresql://")
    assert args["--artifacts-destination"] == "s3://mlflow"
    assert args["--app-name"] == "basic-auth"
    assert args["-w"] == "1"
    assert "mlflow:5000" in args["--allowed-hosts"].split(",")
    env = svc["environment"]
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"


@pytest.mark.slow
def test_prefect_commands(services, cli_help):
    server = _argv(services["prefect-server"]["command"])
    worker = _argv(services["prefect-worker"]["command"])
    assert server[:3] == ["prefect", "server", "start"]
    assert worker[:3] == ["prefect", "worker", "start"]
    _check_help(server, 3, cli_help["prefect server start"])
    _check_help(worker, 3, cli_help["prefect worker start"])
    assert worker[worker.index("--pool") + 1] == _params_flows_pool()
    env = services["prefect-worker"]["environment"]
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    db_url = services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert db_url.startswith("postgresql+asyncpg://")


def _params_flows_pool() -> str:
    return yaml.safe_load((ROOT / "params.yaml").read_text())["flows"]["work_pool"]


def _dockerfile_cmd(path: Path) -> list[str]:
    lines = path.read_text().replace("\\\n", " ").splitlines()
    cmds = [ln for ln in lines if ln.startswith("CMD ")]
    assert cmds, f"{path.name}: no CMD"
    return json.loads(cmds[-1].removeprefix("CMD "))


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile(name):
    path = DOCKER / name
    text = path.read_text()
    instructions = [ln.split()[0] for ln in text.replace("\\\n", " ").splitlines() if ln.strip()]
    instructions = [w for w in instructions if not w.startswith("#")]
    assert instructions[0] in ("ARG", "FROM") and "FROM" in instructions
    assert set(instructions) <= {
        "ARG", "FROM", "RUN", "ENV", "COPY", "WORKDIR", "USER", "EXPOSE", "ENTRYPOINT", "CMD",
        "LABEL",
    }  # fmt: skip
    assert re.search(r"^USER callqa$", text, re.M), "runs as root"
    assert "requirements.lock" in text and "pip install --no-deps --no-build-isolation -e ." in text
    cmd = _dockerfile_cmd(path)
    assert cmd[:2] == ["callqa", "serve"] and "0.0.0.0" in cmd
    if name == "Dockerfile":  # CPU: no CUDA wheels, CPU torch
        assert "grep -vE '^(nvidia-|triton==|torch==|torchaudio==)'" in text
        assert "download.pytorch.org/whl/cpu" in text


def test_dockerfile_cpu_filter_keeps_the_rest_of_the_lock():
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    dropped = [ln for ln in lock if re.match(r"^(nvidia-|triton==|torch==|torchaudio==)", ln)]
    assert {"torch==2.9.1", "torchaudio==2.9.1"} <= set(dropped)
    assert all(ln.startswith(("nvidia-", "triton==", "torch==", "torchaudio==")) for ln in dropped)
    extras = (DOCKER / "requirements-docker.txt").read_text().splitlines()
    pins = [ln.split("==")[0].lower() for ln in extras if ln and not ln.startswith("#")]
    locked = {ln.split("==")[0].lower() for ln in lock if "==" in ln}
    assert pins and all("==" in ln for ln in extras if ln and not ln.startswith("#"))
    assert not set(pins) & locked, "docker extras must not re-pin a package of the lock"


def test_dockerignore_keeps_outputs_and_secrets_out():
    patterns = {
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    assert {".git", ".venv", "data", "models", "reports", ".cache", "mlflow/mlflow.db"} <= patterns
    assert "docker/.env" in patterns
    assert not {"src", "params.yaml", "scorecards", "dvc.yaml", ".dvc"} & patterns
