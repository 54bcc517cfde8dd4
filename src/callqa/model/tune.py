"""Hyperparameter search for `callqa train`: Optuna study -> best params JSON + MLflow runs.

Each trial is a short `train.fit` (tune.epochs, tune.max_train_rows) with params sampled from
`tune.search_space` (TPE), pruned by a MedianPruner on each epoch's validation macro-F1, and
logged as a nested MLflow run under one "tune" run per worker. Workers that share
`tune.storage` (SQLite on one machine, PostgreSQL across machines) share one study. The best
trial of the whole study is written to `tune.out`, which `callqa train` reads.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callqa import tracking
from callqa.config import MlflowConfig, SearchSpace, TuneConfig
from callqa.files import atomic_path

if TYPE_CHECKING:
    from callqa.config import TrainConfig

logger = logging.getLogger(__name__)

METRIC = "val_macro_f1"  # maximised; reported to the pruner after every epoch
# Fields of TrainConfig the search sets; the best-params file holds a subset of them.
SEARCHED = (
    "lr", "head_lr", "freeze", "top_k_layers", "fusion", "dropout", "batch_size", "lora_rank"
)  # fmt: skip


def suggest(trial, space: SearchSpace) -> dict[str, Any]:
    """Sample one set of train params. `top_k_layers` is sampled only when freeze = top_k and
    `lora_rank` only when freeze = lora, so the sampler never learns from unused values."""
    params = {
        "lr": trial.suggest_float("lr", *space.lr, log=True),
        "head_lr": trial.suggest_float("head_lr", *space.head_lr, log=True),
        "freeze": trial.suggest_categorical("freeze", space.freeze),
        "fusion": trial.suggest_categorical("fusion", space.fusion),
        "dropout": trial.suggest_float("dropout", *space.dropout),
        "batch_size": trial.suggest_categorical("batch_size", space.batch_size),
    }
    if params["freeze"] == "top_k":
        params["top_k_layers"] = trial.suggest_int("top_k_layers", *space.top_k_layers)
    elif params["freeze"] == "lora":
        params["lora_rank"] = trial.suggest_categorical("lora_rank", space.lora_rank)
    return params


def trial_config(train_cfg: TrainConfig, tune_cfg: TuneConfig, params: dict) -> TrainConfig:
    """`train_cfg` with the sampled params and the short-training settings of `tune_cfg`."""
    updates = {**params, "epochs": tune_cfg.epochs, "progress": False}
    if tune_cfg.max_train_rows is not None:
        updates["max_train_rows"] = tune_cfg.max_train_rows
    return type(train_cfg).model_validate({**train_cfg.model_dump(), **updates})


def redact(url: str) -> str:
    """A storage URL with its password hidden, fit for logs and MLflow params."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)


def write_best(path: Path, study) -> dict | None:
    """Write the best trial of `study` as {"params", "value", "study", "trial"}; None if no trial
    completed (the file is then left as it was)."""
    import optuna

    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    doc = {"params": best.params, "value": best.value, "study": study.study_name}
    doc["trial"] = best.number
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return doc


def load_best(path: str | Path) -> dict:
    """Read a best-params file; its "params" are TrainConfig fields (checked here)."""
    path = Path(path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    params = doc.get("params") if isinstance(doc, dict) else None
    if not isinstance(params, dict) or set(params) - set(SEARCHED):
        raise ValueError(
            f"{path}: not a `callqa tune` best-params file (expected {{'params': {{...}}}} with "
            f"keys among {', '.join(SEARCHED)}); run `callqa tune` again or delete it"
        )
    return doc


def _open_study(tune_cfg: TuneConfig, pruner):
    """The study in `tune.storage` (created on first use); a URL that cannot hold one is a
    ValueError naming the setting (password hidden), not a database library's traceback."""
    import optuna

    url = tune_cfg.storage
    where = f"tune.storage = {redact(url)}"
    if url.startswith("sqlite://") and not url.removeprefix("sqlite:///").strip("/"):
        raise ValueError(f"{where}: a sqlite:/// URL needs a file path (sqlite:///data/tune/x.db)")
    tracking.make_sqlite_dir(url)
    try:
        return optuna.create_study(
            study_name=tune_cfg.study_name, storage=url, load_if_exists=True,
            direction="maximize", pruner=pruner,
        )  # fmt: skip
    except Exception as err:  # noqa: BLE001 - sqlalchemy / drivers raise many types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        first = first.replace(url, redact(url))[:300]
        raise ValueError(
            f"{where}: cannot open the study ({type(err).__name__}: {first}); use a "
            "sqlite:///path or a postgresql://user@host/db URL (PostgreSQL needs psycopg2)"
        ) from None


def _objective(trial, tune_cfg: TuneConfig, train_cfg: TrainConfig, data, fit: Callable):
    import optuna

    params = suggest(trial, tune_cfg.search_space)
    cfg = trial_config(train_cfg, tune_cfg, params)
    tags = {"optuna.study": tune_cfg.study_name, "optuna.trial": trial.number}
    pruned = None
    with tracking.run(f"trial-{trial.number}", nested=True, tags=tags) as active:
        if active is not None:
            trial.set_user_attr("mlflow_run_id", active.info.run_id)
        tracking.log_params(params)

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            tracking.log_metrics(metrics, step=epoch)
            trial.report(metrics[METRIC], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"epoch {epoch}: {METRIC} {metrics[METRIC]:.4f} below the median"
                )

        try:
            result = fit(cfg, data, None, on_epoch=on_epoch)  # None: a trial saves no model
        except optuna.TrialPruned as err:
            tracking.set_tags({"optuna.state": "pruned"})
            pruned = err  # raised after the run ends, so MLflow records it FINISHED
        else:
            tracking.set_tags({"optuna.state": "complete"})
            tracking.log_metrics({f"best_{METRIC}": result.best_score})
            tracking.log_metrics({"best_epoch": result.best_epoch})
    if pruned is not None:
        logger.debug("trial %d pruned: %s", trial.number, pruned)
        raise pruned
    return result.best_score


def _log_plots(study) -> None:
    """Optimisation history and param importances as HTML artifacts (plotly; PNG needs
    kaleido). Importances need two completed trials that share a param."""
    import optuna
    from optuna import visualization

    if not tracking.is_active():
        return
    tracking.log_figure(visualization.plot_optimization_history(study), "optuna/history.html")
    tracking.log_figure(visualization.plot_intermediate_values(study), "optuna/epochs.html")
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        logger.info("param importances need 2 completed trials, the study has %d", len(complete))
        return
    try:
        figure = visualization.plot_param_importances(study)
    except (ValueError, RuntimeError) as err:  # e.g. no param common to the completed trials
        logger.info("param importances not computed: %s", err)
        return
    tracking.log_figure(figure, "optuna/importances.html")


def run(
    tune_cfg: TuneConfig,
    train_cfg: TrainConfig,
    mlflow_cfg: MlflowConfig,
    data,
    fit: Callable | None = None,
) -> dict:
    """Run `tune_cfg.n_trials` trials of the shared study and write its best params.

    Args:
        tune_cfg: the `tune` params section.
        train_cfg: the `train` section; each trial overrides the searched fields, `epochs`
            and `max_train_rows`.
        mlflow_cfg: the `mlflow` section (tracking is configured here).
        data: a `callqa.model.dataset.TrainData` with train and val rows.
        fit: the training function (default `callqa.model.train.fit`), same contract.

    Returns:
        Summary: study, storage (password hidden), trials (this worker's), complete, pruned,
        study_trials (all workers), best_value, best_trial, best_params, out (None when no
        trial has completed yet), mlflow_run_id, wall_s.
    """
    import optuna

    if fit is None:
        from callqa.model.train import fit
    t0 = time.perf_counter()
    tracking.configure(mlflow_cfg)
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=tune_cfg.pruner_startup_trials,
        n_warmup_steps=tune_cfg.pruner_warmup_epochs,
    )
    study = _open_study(tune_cfg, pruner)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ValueError(
            f"study {tune_cfg.study_name!r} in {redact(tune_cfg.storage)} minimises; "
            "set tune.study_name to a new name"
        )
    # A second worker on the same study must not replay the first one's samples.
    seed = tune_cfg.seed + len(study.trials)
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    first = len(study.trials)
    tags = {"optuna.study": tune_cfg.study_name, "optuna.seed": seed}
    with tracking.run("tune", tags=tags) as parent:
        tracking.log_params(
            {
                "tune": {**tune_cfg.model_dump(mode="json"), "storage": redact(tune_cfg.storage)},
                "train": train_cfg.model_dump(mode="json"),
            }
        )
        tracking.log_lineage({}, hashes=getattr(data, "hashes", None))
        study.optimize(
            lambda trial: _objective(trial, tune_cfg, train_cfg, data, fit),
            n_trials=tune_cfg.n_trials,
            timeout=tune_cfg.timeout_s,
        )
        mine = [t for t in study.get_trials(deepcopy=False) if t.number >= first]
        best = write_best(tune_cfg.out, study)
        if best is None:
            logger.warning("no trial of study %r completed: %s not written", study.study_name,
                           tune_cfg.out)  # fmt: skip
        else:
            tracking.log_dict(best, "best_params.json")
            tracking.log_metrics({f"best_{METRIC}": best["value"]})
            tracking.set_tags({"optuna.best_trial": best["trial"]})
        _log_plots(study)
    states = [t.state.name for t in mine]
    summary = {
        "study": study.study_name,
        "storage": redact(tune_cfg.storage),
        "trials": len(mine),
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "study_trials": len(study.trials),
        "best_value": best and best["value"],
        "best_trial": best and best["trial"],
        "best_params": best and best["params"],
        "out": best and str(tune_cfg.out),
        "mlflow_run_id": parent.info.run_id if parent is not None else None,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    logger.info(
        "tune: %d trials (%d complete, %d pruned), best %s = %s (trial %s)",
        summary["trials"], summary["complete"], summary["pruned"], METRIC,
        summary["best_value"], summary["best_trial"],
    )  # fmt: skip
    return summary
