"""Experiment tracking: runs, params, metrics, lineage and artifacts -> MLflow.

The one module (besides `mlops/`) that imports mlflow, and only inside its functions, so
importing it costs nothing. `configure(cfg)` switches tracking on; until then, when
`mlflow.enabled` is false, or outside a `run()` block, every call is a no-op with a debug log.

    tracking.configure(params.mlflow)
    with tracking.run("train"):
        tracking.log_params(cfg.model_dump())
        tracking.log_metrics({"val_macro_f1": 0.8}, step=epoch)
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from callqa.cache import weights_id
from callqa.config import ConfigError, MlflowConfig
from callqa.files import sha256_file

logger = logging.getLogger(__name__)

URI_ENV = "MLFLOW_TRACKING_URI"  # wins over params.yaml mlflow.tracking_uri
# MLflow's limits (mlflow/utils/validation.py): longer values are rejected, so we cut them.
MAX_PARAM_VALUE_CHARS = 6000
MAX_TAG_VALUE_CHARS = 8000
MAX_KEY_CHARS = 250

_enabled = False  # set by configure(); off until then
REACH_TIMEOUT_S = 5  # a tracking server that does not answer /health this fast is down


class TrackingError(ConfigError):
    """The tracking store cannot be used (a server that is down, a URI MLflow refuses)."""


def configure(cfg: MlflowConfig) -> None:
    """Point MLflow at the tracking store and experiment of `cfg` (or turn tracking off).

    The tracking URI is `$MLFLOW_TRACKING_URI` if set, else `cfg.tracking_uri`; the folder of a
    `sqlite:///` file is created. The experiment is created on first use with its artifact
    location (made absolute: MLflow fixes it at creation) and made the active one.
    """
    global _enabled
    _enabled = False  # until the store is known to work
    if not cfg.enabled:
        logger.debug("tracking disabled (mlflow.enabled = false)")
        return
    import mlflow

    env = os.environ.get(URI_ENV)
    uri = env or cfg.tracking_uri
    where = f"{'$' + URI_ENV if env else 'mlflow.tracking_uri'} = {_no_credentials(uri)}"
    _check_reachable(uri, where)
    try:
        _configure(mlflow, cfg, uri, env)
    except mlflow.exceptions.MlflowException as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrackingError(
            f"{where}: MLflow cannot use it ({first[:300]}); fix it, or set "
            "mlflow.enabled: false to run without tracking"
        ) from None
    _enabled = True


def _no_credentials(uri: str) -> str:
    """The URI without a user:password@ part (never printed)."""
    scheme, sep, rest = uri.partition("://")
    return f"{scheme}{sep}{rest.split('@', 1)[1]}" if sep and "@" in rest.split("/", 1)[0] else uri


def _check_reachable(uri: str, where: str) -> None:
    """A tracking server that is down is one clear error, not minutes of MLflow's retries."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=REACH_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return  # something answers: MLflow itself says what it thinks of it
    except (OSError, ValueError) as err:
        why = getattr(err, "reason", None) or err
        raise TrackingError(
            f"{where}: the tracking server cannot be reached ({why}); start it, point "
            "the URI at a running one, or set mlflow.enabled: false to run without tracking"
        ) from None


def _configure(mlflow, cfg: MlflowConfig, uri: str, env: str | None) -> None:
    make_sqlite_dir(uri)
    mlflow.set_tracking_uri(uri)
    # set_tracking_uri also exports $MLFLOW_TRACKING_URI; put back the user's value (or none),
    # so a later configure() in this process is not pinned to this store.
    if env is None:
        os.environ.pop(URI_ENV, None)
    else:
        os.environ[URI_ENV] = env
    client = mlflow.MlflowClient()
    location = cfg.artifact_location
    if uri.startswith(("http://", "https://")):
        # a tracking server keeps artifacts where it was told (--artifacts-destination); a local
        # folder here would leave them on this machine's disk
        location = None
    elif "://" not in location:
        location = str(Path(location).resolve())
    experiment = client.get_experiment_by_name(cfg.experiment)
    if experiment is None:
        try:
            client.create_experiment(cfg.experiment, artifact_location=location)
        except mlflow.exceptions.MlflowException:  # another worker created it first
            experiment = client.get_experiment_by_name(cfg.experiment)
            if experiment is None:
                raise
    if (
        location is not None
        and experiment is not None
        and experiment.artifact_location.removeprefix("file://") != location
    ):
        logger.warning(
            "experiment %r keeps its artifact location %s (fixed at creation); "
            "mlflow.artifact_location = %s applies to a new experiment name only",
            cfg.experiment,
            experiment.artifact_location,
            location,
        )
    mlflow.set_experiment(cfg.experiment)
    logger.debug("tracking to %s, experiment %r", uri, cfg.experiment)


def make_sqlite_dir(url: str) -> None:
    """Create the folder of a `sqlite:///` database URL (SQLite makes the file, not the folder)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def is_active() -> bool:
    """True inside a `run()` block with tracking enabled: log calls will be recorded."""
    if not _enabled:
        return False
    import mlflow

    return mlflow.active_run() is not None


def _skip(what: str) -> bool:
    if is_active():
        return False
    logger.debug("tracking off or no active run: %s not logged", what)
    return True


@contextmanager
def run(name: str, nested: bool = False, tags: Mapping[str, Any] | None = None) -> Iterator:
    """Start an MLflow run named `name` and yield it (None when tracking is off).

    `nested=True` makes it a child of the active run (tag `mlflow.parentRunId`). The run ends
    FINISHED, or FAILED (KILLED on Ctrl-C) when the block raises; the exception propagates.
    """
    if not _enabled:
        logger.debug("tracking disabled: run %r not recorded", name)
        yield None
        return
    import mlflow

    active = mlflow.start_run(run_name=name, nested=nested, tags=_strings(tags or {}))
    try:
        yield active
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> one level with dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _text(value: Any, limit: int) -> str:
    if isinstance(value, (list, tuple)):  # JSON, so ["a", "b"] reads back as a list
        text = json.dumps(list(value), default=str)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _strings(values: Mapping[str, Any], limit: int = MAX_TAG_VALUE_CHARS) -> dict[str, str]:
    return {str(k)[:MAX_KEY_CHARS]: _text(v, limit) for k, v in values.items()}


def log_params(params: Mapping[str, Any]) -> None:
    """Log params, flattened to dotted keys, as strings cut to MLflow's length limit."""
    if _skip("params"):
        return
    import mlflow

    mlflow.log_params(_strings(flatten(params), MAX_PARAM_VALUE_CHARS))


def log_metrics(metrics: Mapping[str, Any], step: int | None = None) -> None:
    """Log numeric metrics at `step` (e.g. the epoch); None, NaN and infinities are skipped."""
    if _skip("metrics"):
        return
    import mlflow

    finite = {}
    for key, value in flatten(metrics).items():
        if value is None or isinstance(value, (str, bool)):
            continue
        value = float(value)
        if math.isfinite(value):
            finite[key[:MAX_KEY_CHARS]] = value
    if finite:
        mlflow.log_metrics(finite, step=step)


def set_tags(tags: Mapping[str, Any]) -> None:
    """Set tags on the active run (values as strings)."""
    if _skip("tags"):
        return
    import mlflow

    mlflow.set_tags(_strings(tags))


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    """Copy a file or a whole folder into the active run's artifacts (under `artifact_path`)."""
    if _skip(f"artifact {path}"):
        return
    import mlflow

    path = Path(path)
    if path.is_dir():
        mlflow.log_artifacts(str(path), artifact_path)
    else:
        mlflow.log_artifact(str(path), artifact_path)


def log_dict(data: Mapping | list, artifact_file: str) -> None:
    """Write `data` as a JSON (or YAML, by suffix) artifact named `artifact_file`."""
    if _skip(f"artifact {artifact_file}"):
        return
    import mlflow

    mlflow.log_dict(data, artifact_file)


def log_text(text: str, artifact_file: str) -> None:
    """Write `text` as an artifact named `artifact_file`."""
    if _skip(f"artifact {artifact_file}"):
        return
    import mlflow

    mlflow.log_text(text, artifact_file)


def log_figure(figure: Any, artifact_file: str) -> None:
    """Save a matplotlib or plotly figure as an artifact (plotly: use a `.html` name; PNG
    export needs kaleido, which is not installed)."""
    if _skip(f"artifact {artifact_file}"):
        return
    import mlflow

    mlflow.log_figure(figure, artifact_file)


def log_model_dir(model_dir: str | Path, artifact_path: str = "model") -> None:
    """Log a trained model folder (safetensors + JSON) as run artifacts, with its hash as tag
    `model.sha256`. Registering it as an MLflow model is done by `callqa.mlops`."""
    if _skip(f"model {model_dir}"):
        return
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model folder {model_dir} not found: train a model first")
    log_artifact(model_dir, artifact_path)
    set_tags({"model.sha256": weights_id(model_dir).removeprefix("sha256:")})


def git_commit(cwd: str | Path = ".") -> str:
    """HEAD commit of the git checkout at `cwd` (+ "-dirty" with uncommitted changes to tracked
    files), or "unknown" outside a checkout or without git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def lineage(
    paths: Mapping[str, str | Path],
    cwd: str | Path = ".",
    hashes: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Lineage tags for the inputs of a run.

    `lineage.<name>`: sha256 of each file, tree hash of each folder, "missing" if absent, and
    each of `hashes` (sha256s already known, e.g. `TrainData.hashes`); `lineage.git_commit`;
    `lineage.dvc_lock` (sha256 of `cwd`/dvc.lock) when present.
    """
    tags = {f"lineage.{name}": digest for name, digest in (hashes or {}).items()}
    for name, path in paths.items():
        path = Path(path)
        if path.is_file():
            tags[f"lineage.{name}"] = sha256_file(path)
        elif path.is_dir():  # hash of the sorted relative names and file hashes
            tags[f"lineage.{name}"] = weights_id(path).removeprefix("sha256:")
        else:
            tags[f"lineage.{name}"] = "missing"
    tags["lineage.git_commit"] = git_commit(cwd)
    lock = Path(cwd) / "dvc.lock"
    if lock.is_file():
        tags["lineage.dvc_lock"] = sha256_file(lock)
    return tags


def log_lineage(
    paths: Mapping[str, str | Path],
    cwd: str | Path = ".",
    hashes: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Tag the active run with `lineage(...)` and return the tags ({} when not logged)."""
    if _skip("lineage"):
        return {}
    tags = lineage(paths, cwd, hashes)
    set_tags(tags)
    return tags
