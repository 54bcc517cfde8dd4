"""`callqa register / promote / rollback / serve` on bad input, on a real MLflow registry
(sqlite in a temp dir). Most versions here are bare registry entries (no pipeline behind
them): these cases end before any scoring. Each used to end in a traceback (exit 1) or a
wrong answer; each must be one line with its exit code, and nothing moves in the registry."""

from __future__ import annotations

import warnings

import pytest
import yaml
from conftest import ROOT
from typer.testing import CliRunner

from callqa.cli import app
from callqa.config import load_params
from callqa.mlops import registry

runner = CliRunner()
NAME = "callqa-scorer-unit"


def _cli(args, params, code):
    res = runner.invoke(app, [*args, "--params", str(params)], catch_exceptions=False)
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    return res.output


def _one_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    return lines[0]


@pytest.fixture
def params(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "500")  # rich wraps a long line at 80 columns otherwise
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["mlflow"].update(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_location=str(tmp_path / "art")
    )
    p["registry"].update(name=NAME, model_dir=None)
    # one call already there, so a gate that did run would not synthesise any
    p["registry"]["gate"].update(eval_calls=str(tmp_path / "eval"), eval_n_calls=1)
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "call.wav").write_bytes(b"RIFF")
    p["score"]["scorecard"] = str(ROOT / "scorecards" / "default.yaml")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p))
    return path


def _client(params):
    import mlflow
    from callqa import tracking

    tracking.configure(load_params(params).mlflow)
    return mlflow.MlflowClient()


def _bare_versions(params, n: int, production: str | None = None):
    """`n` registry versions with empty folders as their source (they do not load)."""
    client = _client(params)
    client.create_registered_model(NAME)
    for i in range(n):
        source = params.parent / f"v{i + 1}"
        source.mkdir()
        client.create_model_version(NAME, str(source))
    if production is not None:
        _set_production(client, production)
    return client


def _set_production(client, version: str, previous: str | None = None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(NAME, version, "Production")
    client.set_registered_model_alias(NAME, "production", version)
    if previous is not None:
        client.set_model_version_tag(NAME, version, registry.PREVIOUS_TAG, previous)


def _production(client) -> str:
    return str(client.get_model_version_by_alias(NAME, "production").version)


@pytest.mark.parametrize("version", ["abc", "-1", "0", "1.5", "' OR 1=1", "Production", "999"])
def test_promote_a_version_that_is_not_registered_is_one_line_exit_2(params, version):
    """Found from outside: MlflowException tracebacks (Invalid Model Version stage, not found)."""
    client = _bare_versions(params, 2, production="1")
    line = _one_line(_cli(["promote", "--version", version], params, 2))
    assert "version" in line and NAME in line
    assert _production(client) == "1"


def test_promote_with_nothing_registered_is_one_line_exit_2(params):
    _client(params)
    for args in (["promote"], ["promote", "--version", "1"]):
        assert "callqa register" in _one_line(_cli(args, params, 2))


def test_promoting_the_production_version_says_so_and_runs_no_gate(params, monkeypatch):
    """Found from outside: the gate ran (production against itself) and usually refused it."""

    def no_gate(*args):
        raise AssertionError("the gate must not run")

    monkeypatch.setattr(registry, "eval_calls", no_gate)
    client = _bare_versions(params, 2, production="2")
    out = _cli(["promote", "--version", "2"], params, 0)
    assert "version 2 is already production" in out and "refused" not in out
    assert _production(client) == "2"


def test_a_version_that_does_not_load_is_one_line_naming_it(params):
    """The registry holds version 2, but its folder is no MLflow model (a broken copy)."""
    client = _bare_versions(params, 2, production="1")
    line = _one_line(_cli(["promote", "--version", "2"], params, 2))
    assert "version 2 does not load" in line
    assert _production(client) == "1"


def test_production_moved_by_another_promote_during_the_gate_is_refused(params, monkeypatch):
    """Found from outside: two concurrent promotes both said "promoted"; only one held."""
    client = _bare_versions(params, 3, production="1")

    @registry.contextmanager
    def loaded(params, versions):
        yield [(None, None) for _ in versions]

    def gate_meanwhile_another_promote(loaded, calls):
        _set_production(client, "3", previous="1")  # the other run wins while we score
        return [{"check_macro_f1": 0.9} for _ in loaded]

    monkeypatch.setattr(registry, "_loaded", loaded)
    monkeypatch.setattr(registry, "evaluate_versions", gate_meanwhile_another_promote)
    out = _cli(["promote", "--version", "2"], params, 3)
    assert "production changed from 1 to 3" in out and "refused" in out
    assert _production(client) == "3"
    assert client.get_model_version(NAME, "2").current_stage == "None"


def test_rollback_with_nothing_different_to_roll_back_to(params):
    """Found from outside: after a self-promotion `rollback` said "production 1 -> 1", exit 0."""
    client = _bare_versions(params, 1)
    _set_production(client, "1", previous="1")
    line = _one_line(_cli(["rollback"], params, 2))
    assert "nothing different to roll back to" in line and "1 -> 1" not in line
    _set_production(client, "1", previous="7")  # it replaced a version deleted since
    assert "no version 7" in _one_line(_cli(["rollback"], params, 2))
    assert _production(client) == "1"


@pytest.mark.parametrize("uri", ["runs:/0123456789abcdef0123456789abcdef/model", "runs:/",
                                 f"models:/{NAME}/9"])  # fmt: skip
def test_serve_a_fixed_uri_that_does_not_exist_exits_2(params, uri, monkeypatch):
    """Found from outside: `serve --model runs:/abc/model` answered 503 "not ready" for ever."""
    from callqa.mlops import serve

    def never(*args):
        raise AssertionError("must not serve")

    monkeypatch.setattr(serve, "listen", never)
    _bare_versions(params, 1, production="1")
    line = _one_line(_cli(["serve", "--model", uri], params, 2))
    assert "--model" in line and ("does not exist" in line or "no run id" in line)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """An untrained (but whole) model folder, and a copy whose weights file is cut short."""
    from callqa.config import EMOTIONS, INTENTS
    from callqa.model import modeldir
    from callqa.model.features import FeatureSpec
    from callqa.model.fusion import ModelSpec, QAModel

    root = tmp_path_factory.mktemp("models")
    spec = ModelSpec(list(INTENTS), list(EMOTIONS), 16, 8, hidden=32)
    good = modeldir.save(QAModel(spec), FeatureSpec(), dict.fromkeys(INTENTS, 0.5), {},
                         {"licenses": []}, root / "good")  # fmt: skip
    cut = root / "truncated"
    cut.mkdir()
    for name in modeldir.FILES:
        (cut / name).write_bytes((good / name).read_bytes())
    with open(cut / "model.safetensors", "r+b") as f:
        f.truncate(4000)
    return good, cut


def test_register_refuses_a_model_folder_that_does_not_load(params, model_dirs):
    """Found from outside: it was registered, then failed in promote and serve."""
    _, cut = model_dirs
    line = _one_line(_cli(["register", "--model", str(cut)], params, 2))
    assert str(cut) in line and "does not load" in line and "nothing registered" in line
    assert _client(params).search_model_versions(f"name = '{NAME}'") == []


def test_promote_a_registered_version_whose_weights_were_cut_short(params, model_dirs):
    """Found from outside: a ConfigError traceback (Error while deserializing header)."""
    good, _ = model_dirs
    assert registry.register(load_params(params), good) == "1"
    (weights,) = (params.parent / "art").rglob("model.safetensors")  # the registry's copy
    with open(weights, "r+b") as f:
        f.truncate(4000)
    line = _one_line(_cli(["promote", "--version", "1"], params, 2))
    assert "version 1 does not load" in line and "damaged model" in line
    assert registry.production_version(load_params(params)) is None
