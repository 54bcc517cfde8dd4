"""The scoring pipeline in the MLflow model registry: register, gated promotion, rollback.

- `register` logs the pipeline (pyfunc.py, models-from-code) in a run with lineage tags and
  registers a new version of `registry.name`.
- `promote` scores the frozen evaluation calls (the `test` bank's, synthesised once) with the
  candidate and with the production version in turn, call by call, and moves the candidate
  None -> Staging -> Production, with the aliases `staging` and `production`, only when the
  gate of params.yaml passes (gate.py); the old production version is archived. Each
  decision is logged as a run.
- `rollback` gives Production and `production` back to the version production replaced.

Stages are deprecated in MLflow 3 (FutureWarning) but users promote by stage, so both move:
`models:/NAME/Production` and `models:/NAME@production` name the same version.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from callqa.config import ConfigError, Params
from callqa.mlops.gate import agreement_metrics, cache_at, eval_calls, evaluate_versions, judge

logger = logging.getLogger(__name__)

QA_MODEL_FILE = Path(__file__).with_name("qa_model.py")
ALIAS_PRODUCTION, ALIAS_STAGING = "production", "staging"
PREVIOUS_TAG = "callqa.previous_production"  # set on a version when it replaces another


@dataclass
class Decision:
    candidate: str
    production: str | None
    promoted: bool
    reasons: list[str]
    candidate_metrics: dict = field(default_factory=dict)
    production_metrics: dict = field(default_factory=dict)

    @property
    def unchanged(self) -> bool:
        """The candidate was production already: no gate ran, nothing moved."""
        return self.candidate == self.production


class VersionError(LookupError):
    """A version that cannot be promoted: not a version number, not registered, or one whose
    pipeline does not load."""


def _first_line(err: BaseException, limit: int = 300) -> str:
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text if len(text) <= limit else text[:limit] + " ..."


def _client(params: Params):
    import mlflow
    from callqa import tracking

    tracking.configure(params.mlflow)
    return mlflow.MlflowClient()


def register(params: Params, model_dir: Path | None = None) -> str:
    """Log the scoring pipeline and register it; returns the new version number."""
    import pandas as pd

    import mlflow
    from callqa import tracking
    from callqa.mlops import pyfunc

    model_dir = model_dir if model_dir is not None else params.registry.model_dir
    if model_dir is not None and (Path(model_dir) / "model.safetensors").is_file():
        check_model_dir(Path(model_dir))
    tracking.configure(params.mlflow)
    with tempfile.TemporaryDirectory(prefix="callqa-register-") as tmp:
        arts = pyfunc.artifacts(params, model_dir, Path(tmp))
        data = {}
        if "model" in arts:
            data = json.loads((Path(arts["model"]) / "data.json").read_text(encoding="utf-8"))
        licenses = data.get("licenses", [])
        tags = {
            **tracking.lineage({"scorecard": arts["scorecard"], "model": model_dir or "none"}),
            "callqa.asr_model": f"{params.transcribe.backend}:{params.transcribe.model}",
            "callqa.model_dir": str(model_dir) if "model" in arts else "none (rules only)",
            "callqa.licenses": "; ".join(licenses) or "none",
            **{f"lineage.data.{k}": v for k, v in data.get("hashes", {}).items()},
        }
        example = pd.DataFrame({"audio_b64": [""], "name": ["example.wav"]})
        with mlflow.start_run(run_name="register", tags=tags) as run:
            mlflow.log_params(pyfunc_params(params))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                info = mlflow.pyfunc.log_model(
                    name="qa_pipeline",
                    python_model=str(QA_MODEL_FILE),
                    artifacts=arts,
                    signature=pyfunc.signature(),
                    input_example=example,
                    registered_model_name=params.registry.name,
                    pip_requirements=_requirements(),
                )
        version = str(info.registered_model_version)
        client = mlflow.MlflowClient()
        for key, value in {**tags, "callqa.run_id": run.info.run_id}.items():
            client.set_model_version_tag(params.registry.name, version, key, str(value)[:5000])
    logger.info("registered %s version %s (run %s)", params.registry.name, version, run.info.run_id)
    return version


def check_model_dir(model_dir: Path) -> None:
    """ConfigError unless the trained model at `model_dir` loads (weights that fit their
    config), so a broken folder never becomes a version that fails in promote or serve."""
    from callqa.model import modeldir

    try:
        modeldir.load(model_dir)
    except Exception as err:  # noqa: BLE001 - whatever the cause, it is not a model to ship
        raise ConfigError(
            f"{model_dir}: the model does not load ({_first_line(err)}); nothing registered"
        ) from None


def pyfunc_params(params: Params) -> dict:
    from callqa import tracking
    from callqa.mlops.pyfunc import scoring_params

    return tracking.flatten(scoring_params(params))


def _requirements() -> list[str]:
    lock = Path(__file__).resolve().parents[3] / "requirements.lock"
    if lock.is_file():
        return [line for line in lock.read_text().splitlines() if line and line[0] != "#"]
    return ["callqa"]


def _load(params: Params, version: str):
    """The version's pipeline; VersionError (one line) when it does not load."""
    import mlflow

    try:
        model = mlflow.pyfunc.load_model(f"models:/{params.registry.name}/{version}")
        return model.unwrap_python_model()
    except Exception as err:  # noqa: BLE001 - a broken copy, a missing file, a bad model
        raise VersionError(
            f"{params.registry.name} version {version} does not load: {_first_line(err)}"
        ) from None


@contextmanager
def _loaded(params: Params, versions: list[str]):
    """Each version's pipeline with a fresh cache of its own, as (pipeline, cache folder)
    pairs, for the block: a version scored after another must not read its transcripts."""
    with ExitStack() as stack:
        loaded = []
        for version in versions:
            cache = stack.enter_context(tempfile.TemporaryDirectory(prefix="callqa-gate-"))
            with cache_at(cache):
                loaded.append((_load(params, version), cache))
        yield loaded


# ---------------------------------------------------------------- promote / rollback


def production_version(params: Params) -> str | None:
    import mlflow

    try:
        version = _client(params).get_model_version_by_alias(params.registry.name, ALIAS_PRODUCTION)
    except mlflow.exceptions.MlflowException:
        return None
    return str(version.version)  # an int from a SQL store: "1" == 1 is False


def registered_version(params: Params, version: str) -> str:
    """`version` as the registry spells it ("01" -> "1"); VersionError when it is not a
    version number or no such version is registered."""
    import mlflow

    name = params.registry.name
    if not (version.isascii() and version.isdigit() and int(version) > 0):
        raise VersionError(f"{name} version {version!r}: give a version number (1, 2, ...), "
                           "as `callqa register` printed it")  # fmt: skip
    try:
        _client(params).get_model_version(name, str(int(version)))
    except mlflow.exceptions.MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise VersionError(f"{name} has no version {int(version)}: see `callqa register` "
                           "or the MLflow UI for the registered ones") from None  # fmt: skip
    return str(int(version))


def latest_version(params: Params) -> str:
    client = _client(params)
    versions = client.search_model_versions(f"name = '{params.registry.name}'")
    if not versions:
        raise LookupError(
            f"no version of {params.registry.name!r} is registered: run `callqa register`"
        )
    return str(max(int(v.version) for v in versions))


def promote(params: Params, version: str | None = None, review_url: str | None = None) -> Decision:
    """Evaluate the candidate (default: the latest version) against production; promote it
    when the gate passes. The decision and both metric sets are logged as an MLflow run.
    With `registry.gate.review_agreement`, both are also scored on the reviewed calls of the
    review database at `review_url`."""
    import mlflow

    client = _client(params)
    name = params.registry.name
    candidate = registered_version(params, version) if version else latest_version(params)
    current = production_version(params)
    if current == candidate:
        return Decision(candidate, current, False, [f"version {current} is already production"])
    calls = eval_calls(params)
    with _loaded(params, [candidate, current] if current else [candidate]) as loaded:
        metrics = evaluate_versions(loaded, calls)
        if params.registry.gate.review_agreement and current and review_url:
            extra = agreement_metrics(loaded, review_url)
            metrics = [{**m, **x} for m, x in zip(metrics, extra, strict=True)]
    cand_metrics, prod_metrics = metrics[0], (metrics[1] if current else None)
    ok, reasons = judge(cand_metrics, prod_metrics, params)
    now = production_version(params)
    if ok and now != current:  # another promote or a rollback moved it while the gate ran
        ok = False
        reasons.append(f"production changed from {current or 'none'} to {now} while the gate "
                       "ran: nothing moved; promote again to compare against it")  # fmt: skip
    decision = Decision(candidate, current, ok, reasons, cand_metrics, prod_metrics or {})
    if ok:
        _move(client, name, candidate, current)
    with mlflow.start_run(
        run_name="promote", tags={"callqa.decision": "promoted" if ok else "refused"}
    ):
        mlflow.log_params({"candidate": candidate, "production": current or "none"})
        mlflow.log_metrics({f"candidate.{k}": v for k, v in cand_metrics.items() if v is not None})
        mlflow.log_metrics(
            {f"production.{k}": v for k, v in (prod_metrics or {}).items() if v is not None}
        )
        mlflow.log_dict(decision.__dict__, "decision.json")
    return decision


def _move(client, name: str, version: str, previous: str | None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(name, version, "Staging")
        client.set_registered_model_alias(name, ALIAS_STAGING, version)
        client.transition_model_version_stage(name, version, "Production",
                                              archive_existing_versions=True)  # fmt: skip
    client.set_registered_model_alias(name, ALIAS_PRODUCTION, version)
    if previous is not None:
        client.set_model_version_tag(name, version, PREVIOUS_TAG, previous)


def rollback(params: Params) -> tuple[str, str]:
    """Production back to the version the current one replaced: (from, to)."""
    import mlflow

    client = _client(params)
    name = params.registry.name
    current = production_version(params)
    if current is None:
        raise LookupError(f"{name} has no production version to roll back")
    previous = client.get_model_version(name, current).tags.get(PREVIOUS_TAG)
    if previous is None or previous == current:
        raise LookupError(f"{name} version {current} replaced no earlier production version: "
                          "nothing different to roll back to")  # fmt: skip
    try:
        client.get_model_version(name, previous)
    except mlflow.exceptions.MlflowException:
        gone = f"there is no version {previous} any more: nothing to roll back to"
        raise LookupError(
            f"{name} version {current} replaced version {previous}, but {gone}"
        ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(name, previous, "Production",
                                              archive_existing_versions=True)  # fmt: skip
    client.set_registered_model_alias(name, ALIAS_PRODUCTION, previous)
    with mlflow.start_run(run_name="rollback", tags={"callqa.decision": "rollback"}):
        mlflow.log_params({"from": current, "to": previous})
    return current, previous


# ---------------------------------------------------------------- what `callqa serve` serves


URI_SCHEMES = ("models", "runs", "file", "http", "https", "s3", "gs", "wasbs", "hdfs", "dbfs",
               "mlflow-artifacts")  # fmt: skip


def check_model_uri(uri: str) -> None:
    """ConfigError for a URI that can never name a model: an unknown scheme, a missing folder
    (`serve` would otherwise answer 503 "still loading" for ever)."""
    scheme, sep, _ = uri.partition(":")
    if sep and len(scheme) > 1:  # "C:" is a Windows drive, not a scheme
        if scheme.lower() not in URI_SCHEMES:
            raise ConfigError(f"--model: unknown URI scheme {scheme!r}; use models:/NAME@alias, "
                              "runs:/ID/PATH, a folder or 'local'")  # fmt: skip
        return
    if not Path(uri).is_dir():
        raise ConfigError(f"--model {uri}: no such folder (give models:/NAME@alias or 'local')")


class RegistrySource:
    """The server's model source: `models:/NAME@alias` follows the alias (a move is a new
    version to load); any other MLflow model URI or folder is served as it is."""

    def __init__(self, params: Params, model_uri: str | None = None):
        self.params = params
        self.uri = model_uri or params.serve.model_uri
        self.client = _client(params)
        name, sep, alias = self.uri.removeprefix("models:/").partition("@")
        self.name, self.alias = (name, alias) if self.uri.startswith("models:/") and sep else (
            None, None)  # fmt: skip

    def check_exists(self) -> None:
        """ConfigError when a fixed URI (`runs:/ID/...`, `models:/NAME/N`) names a run or a
        version the tracking store says does not exist: it could never load. An alias, a stage
        or a folder is not checked here, nor is anything when the store does not answer."""
        import mlflow

        scheme, _, rest = self.uri.partition(":/")
        parts = rest.strip("/").split("/")
        if scheme == "runs" and not parts[0]:
            raise ConfigError(f"--model {self.uri}: no run id; give runs:/RUN_ID/PATH")
        try:
            if scheme == "runs":
                self.client.get_run(parts[0])
            elif scheme == "models" and self.alias is None and parts[-1].isdigit():
                self.client.get_model_version("/".join(parts[:-1]), parts[-1])
        except mlflow.exceptions.MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise ConfigError(f"--model {self.uri}: {_first_line(err)} (the "
                                  "tracking store says it does not exist)") from None  # fmt: skip
            logger.warning("cannot check %s now: %s", self.uri, _first_line(err))

    def current_version(self) -> str | None:
        if self.alias is None:
            return "fixed"
        try:
            return str(self.client.get_model_version_by_alias(self.name, self.alias).version)
        except Exception as err:  # noqa: BLE001 - unreachable store or no such alias yet
            logger.warning("cannot resolve %s: %s", self.uri, err)
            return None

    def load(self, version: str):
        import mlflow

        uri = self.uri if self.alias is None else f"models:/{self.name}/{version}"
        model = mlflow.pyfunc.load_model(uri).unwrap_python_model()
        model.version = model.loaded.version = version if self.alias else self.uri
        return model
