"""The scoring pipeline in the MLflow model registry: register, gated promotion, rollback.

- `register` logs the pipeline (pyfunc.py, models-from-code) in a run with lineage tags and
  registers a new version of `registry.name`.
- `promote` scores the frozen evaluation calls (the `test` bank's, synthesised once) with the
  candidate and with the production version in turn, call by call, and moves the candidate
  None -> Staging -> Production, with the aliases `staging` and `production`, only when the
  gate of params.yaml passes; the old production version is archived. Each decision is logged
  as a run.
- `rollback` gives Production and `production` back to the version production replaced.

Stages are deprecated in MLflow 3 (FutureWarning) but users promote by stage, so both move:
`models:/NAME/Production` and `models:/NAME@production` name the same version.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from callqa.cache import CACHE_ENV
from callqa.config import ConfigError, Params
from callqa.mlops.calls import check_f1

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

    tracking.configure(params.mlflow)
    model_dir = model_dir if model_dir is not None else params.registry.model_dir
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


def pyfunc_params(params: Params) -> dict:
    from callqa import tracking
    from callqa.mlops.pyfunc import scoring_params

    return tracking.flatten(scoring_params(params))


def _requirements() -> list[str]:
    lock = Path(__file__).resolve().parents[3] / "requirements.lock"
    if lock.is_file():
        return [line for line in lock.read_text().splitlines() if line and line[0] != "#"]
    return ["callqa"]


# ---------------------------------------------------------------- the evaluation set


def eval_calls(params: Params) -> list[Path]:
    """The frozen evaluation calls (synthesised once from the `test` bank, then reused)."""
    from callqa.data import synth

    gate = params.registry.gate
    folder = Path(gate.eval_calls)
    calls = sorted(folder.glob("*.wav"))
    if len(calls) < gate.eval_n_calls:
        cfg = params.synth.model_copy(update={"seed": gate.eval_seed, "phrase_bank": "test"})
        synth.run(cfg, params.preprocess.vad, out_dir=folder, n_calls=gate.eval_n_calls,
                  progress=False)  # fmt: skip
        calls = sorted(folder.glob("*.wav"))
    return calls[: gate.eval_n_calls]


def gate_metrics(scored: list[tuple[Path, dict, float]]) -> dict[str, float | None]:
    """check F1 per check (violation class), their macro mean, emotion macro-F1 over both
    roles (None without a model), and scoring seconds per audio second, from one version's
    (call, result, seconds) on the evaluation calls."""
    from sklearn.metrics import f1_score

    truth, predicted, emo_true, emo_pred = [], [], [], []
    seconds = audio_s = 0.0
    for path, result, spent in scored:
        sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        seconds += spent
        audio_s += result["duration_s"]
        truth.append(sidecar["checks"])
        predicted.append({c["id"]: c["passed"] for c in result["checks"]})
        for role, label in (sidecar.get("emotion") or {}).items():
            got = ((result.get("emotion") or {}).get(role) or {}).get("label")
            if got is not None:
                emo_true.append(label)
                emo_pred.append(got)
    ids = [c for c in truth[0] if c in predicted[0]]
    per_check = check_f1(truth, predicted, ids)
    # No violation in truth nor in the answers: F1 is undefined; for the gate that is perfect
    # agreement (1.0), so a candidate's false alarms on such a check count as a drop.
    for cid in ids:
        if not any(
            t.get(cid) is False or p.get(cid) is False
            for t, p in zip(truth, predicted, strict=True)
        ):
            per_check[cid] = 1.0
    known = [v for v in per_check.values() if v is not None]
    out: dict[str, float | None] = {f"check_f1.{k}": v for k, v in per_check.items()}
    out["check_macro_f1"] = round(sum(known) / len(known), 4) if known else None
    out["emotion_macro_f1"] = (
        round(float(f1_score(emo_true, emo_pred, average="macro")), 4) if emo_true else None
    )
    out["x_real_time"] = round(seconds / audio_s, 4) if audio_s else None
    out["n_calls"] = len(scored)
    return out


def _load(params: Params, version: str):
    import mlflow

    model = mlflow.pyfunc.load_model(f"models:/{params.registry.name}/{version}")
    return model.unwrap_python_model()


@contextmanager
def _loaded(params: Params, versions: list[str]):
    """Each version's pipeline with a fresh cache of its own, as (pipeline, cache folder)
    pairs, for the block: a version scored after another must not read its transcripts."""
    with ExitStack() as stack:
        loaded = []
        for version in versions:
            cache = stack.enter_context(tempfile.TemporaryDirectory(prefix="callqa-gate-"))
            with _cache_at(cache):
                loaded.append((_load(params, version), cache))
        yield loaded


@contextmanager
def _cache_at(folder: str):
    """`$CALLQA_CACHE_DIR` set to `folder` for the block."""
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = folder
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CACHE_ENV)
        else:
            os.environ[CACHE_ENV] = before


def evaluate_versions(loaded: list[tuple], calls: list[Path]) -> list[dict]:
    """Gate metrics of each loaded version on the same calls, scored in turn call by call
    (which version goes first alternates), so x_real_time compares the versions under the same
    load of the machine: timings taken at different moments are not comparable."""
    scored: list[list] = [[] for _ in loaded]
    for i, path in enumerate(calls):
        data = path.read_bytes()
        order = range(len(loaded)) if i % 2 == 0 else reversed(range(len(loaded)))
        for v in order:
            pipeline, cache = loaded[v]
            with _cache_at(cache):
                t0 = time.perf_counter()
                result = pipeline.score_bytes(data, path.name)
                scored[v].append((path, result, time.perf_counter() - t0))
    return [gate_metrics(s) for s in scored]


def agreement_metrics(loaded: list[tuple], review_url: str) -> list[dict]:
    """`review_agreement` of each loaded version on the reviewed calls whose audio is on disk
    (read at every promotion: reviews keep coming); empty dicts when there are none."""
    from callqa.review.calibrate import review_agreement, reviewed_calls
    from callqa.review.store import ReviewStore

    calls = reviewed_calls(ReviewStore(review_url))
    if not calls:
        return [{} for _ in loaded]
    out = []
    for pipeline, cache in loaded:
        with _cache_at(cache):
            out.append(review_agreement(pipeline.score_bytes, calls))
    return out


# ---------------------------------------------------------------- promote / rollback


def judge(candidate: dict, production: dict | None, params: Params) -> tuple[bool, list[str]]:
    """The gate: (passes, reasons), one reason per rule that decided or failed."""
    gate = params.registry.gate
    if production is None:
        return True, ["no production version yet: the first candidate is promoted"]
    reasons, ok = [], True
    p_new, p_old = candidate.get(gate.primary), production.get(gate.primary)
    if p_new is None or (p_old is not None and p_new < p_old + gate.min_improvement):
        ok = False
        reasons.append(f"{gate.primary} {p_new} does not beat production's {p_old} by "
                       f"{gate.min_improvement}")  # fmt: skip
    else:
        verdict = "improves" if p_old is None or p_new > p_old else "holds (not worse)"
        reasons.append(f"{gate.primary} {p_new} vs production's {p_old}: {verdict}")
    for metric, old in production.items():
        family = metric.split(".")[0]
        if family not in gate.max_drop or old is None or metric == gate.primary:
            continue
        new = candidate.get(metric)
        if new is None or new < old - gate.max_drop[family]:
            ok = False
            reasons.append(
                f"{metric} drops from {old} to {new} (more than {gate.max_drop[family]})"
            )
    old_rt, new_rt = production.get("x_real_time"), candidate.get("x_real_time")
    if old_rt and new_rt and new_rt > old_rt * (1 + gate.max_x_real_time_growth):
        ok = False
        reasons.append(f"x_real_time grows from {old_rt} to {new_rt} "
                       f"(more than {gate.max_x_real_time_growth:.0%})")  # fmt: skip
    if gate.review_agreement:
        ok &= _agreement_rule(candidate, production, gate.max_agreement_drop, reasons)
    if ok:
        reasons.append("no gated metric drops past its margin")
    return ok, reasons


def _agreement_rule(candidate: dict, production: dict, max_drop: float, reasons: list) -> bool:
    """Agreement with people's latest labels on reviewed calls may drop by at most `max_drop`."""
    new, old = candidate.get("review_agreement"), production.get("review_agreement")
    if old is None:
        reasons.append("review_agreement: no reviewed calls with audio on disk, not gated")
        return True
    n = production.get("review_agreement_n")
    if new is None or new < old - max_drop:
        reasons.append(f"review_agreement drops from {old} to {new} on {n} reviewed checks "
                       f"(more than {max_drop})")  # fmt: skip
        return False
    reasons.append(f"review_agreement {new} vs production's {old} on {n} reviewed checks")
    return True


def production_version(params: Params) -> str | None:
    import mlflow

    try:
        return (
            _client(params)
            .get_model_version_by_alias(params.registry.name, ALIAS_PRODUCTION)
            .version
        )
    except mlflow.exceptions.MlflowException:
        return None


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
    candidate = version or latest_version(params)
    current = production_version(params)
    if current == candidate:
        return Decision(candidate, current, False, ["the candidate is already in production"])
    calls = eval_calls(params)
    with _loaded(params, [candidate, current] if current else [candidate]) as loaded:
        metrics = evaluate_versions(loaded, calls)
        if params.registry.gate.review_agreement and current and review_url:
            extra = agreement_metrics(loaded, review_url)
            metrics = [{**m, **x} for m, x in zip(metrics, extra, strict=True)]
    cand_metrics, prod_metrics = metrics[0], (metrics[1] if current else None)
    ok, reasons = judge(cand_metrics, prod_metrics, params)
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
    if previous is None:
        raise LookupError(f"{name} version {current} replaced no earlier production version")
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
