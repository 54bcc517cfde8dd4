"""`callqa featurize | train | evaluate | tune`: the model stages (registered on `cli.app`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from callqa.cli_common import (
    ParamsOpt,
    ProgressOpt,
    _fail,
    _override,
    _params,
    _print_summary,
    app,
    console,
)


@app.command()
def featurize(
    accepted: Annotated[Path | None, typer.Option(help="Accepted rows (Parquet).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Features folder.")] = None,
    params: ParamsOpt = Path("params.yaml"),
    progress: ProgressOpt = True,
) -> None:
    """Labelled utterances (ASR text, role, times, split, labels) and their model inputs."""
    p = _params(params)
    cfg = _override(p.featurize, {"accepted": accepted, "out_dir": out})
    from callqa.model import featurize as stage

    try:
        summary = stage.run(cfg, p.preprocess, progress=progress)
    except (FileNotFoundError, ValueError) as err:
        raise _fail(str(err), 2) from None
    summary.pop("feature_spec", None)
    _print_summary("featurize", summary)


def apply_best_params(cfg, path: Path | None):
    """TrainConfig with `callqa tune`'s best params (if that file exists) applied: only the
    searched keys (`tune.load_best` checks them); command-line options are applied after."""
    if path is None or not Path(path).exists():
        return cfg
    from pydantic import ValidationError

    from callqa.config import format_validation_error
    from callqa.model.tune import load_best

    try:
        values = load_best(path)["params"]
        cfg = type(cfg).model_validate({**cfg.model_dump(), **values})
    except ValidationError as err:
        raise _fail(format_validation_error(err, str(path), type(cfg)), 2) from None
    except (OSError, ValueError) as err:  # unreadable, not JSON, not a best-params file
        msg = str(err) if str(path) in str(err) else f"{path}: {err}"
        raise _fail(f"train.best_params: {msg}", 2) from None
    console.print(f"train: using tuned params from {path}: {values}")
    return cfg


@app.command()
def train(
    features: Annotated[Path | None, typer.Option(help="Features folder.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Model folder to write.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a model trained on other data.")
    ] = False,
    params: ParamsOpt = Path("params.yaml"),
    progress: ProgressOpt = True,
) -> None:
    """Fine-tune the multimodal QA model; writes one model folder (safetensors + JSON)."""
    p = _params(params)
    cfg = apply_best_params(p.train, p.train.best_params)
    cfg = _override(cfg, {"features_dir": features, "out_dir": out, "epochs": epochs,
                          "progress": None if progress else False})  # fmt: skip
    from callqa import tracking
    from callqa.model import modeldir
    from callqa.model.dataset import TrainData
    from callqa.model.metrics import write_curves
    from callqa.model.train import fit

    try:
        modeldir.check_replaceable(cfg.out_dir)  # before any work
        data = TrainData.load(cfg.features_dir)
    except (FileNotFoundError, ValueError) as err:
        raise _fail(str(err), 2) from None
    # Under torchrun every rank trains; only rank 0 tracks, writes curves and the model.
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        _guard_model_dir(cfg.out_dir, data, force)
    _configure_tracking(p.mlflow if rank == 0 else p.mlflow.model_copy(update={"enabled": False}))
    with tracking.run(
        "train", tags={"callqa.stage": "train", "licenses": "; ".join(data.licenses)}
    ):
        tracking.log_params(cfg.model_dump(mode="json"))
        tracking.log_lineage({"features": cfg.features_dir})
        try:
            result = fit(
                cfg, data, cfg.out_dir, on_epoch=lambda e, m: tracking.log_metrics(m, step=e)
            )
        except ValueError as err:
            raise _fail(str(err), 2) from None
        tracking.log_metrics({f"val_{k}": v for k, v in result.val_metrics.items()})
        if rank:
            return
        tracking.log_dict(result.thresholds, "thresholds.json")
        for path in write_curves(result.history, cfg.curves_dir):
            tracking.log_artifact(path, "curves")
        tracking.log_model_dir(cfg.out_dir)
    _print_summary("train", {
        "best_epoch": result.best_epoch, "epochs_run": len(result.history),
        **{f"val_{k}": round(v, 4) for k, v in result.val_metrics.items()},
        "thresholds": result.thresholds, "out_dir": str(cfg.out_dir),
        "licenses": data.licenses,
    })  # fmt: skip


def _configure_tracking(cfg) -> None:
    """tracking.configure, with a store that cannot be used as one line and exit 2."""
    from callqa import tracking
    from callqa.config import ConfigError

    try:
        tracking.configure(cfg)
    except ConfigError as err:
        raise _fail(str(err), 2) from None


def _guard_model_dir(out: Path, data, force: bool) -> None:
    """Refuse to replace a model trained on other data (e.g. the default one by a demo run)."""
    from callqa.model import modeldir

    if force or not Path(out).exists():
        return
    try:
        saved = modeldir.read(out)
    except (FileNotFoundError, ValueError):
        return
    if saved.data.get("features") != data.hashes:
        raise _fail(
            f"{out} holds a model trained on other data; write this one elsewhere "
            "(--out models/demo) or pass --force to replace it",
            2,
        )


@app.command()
def evaluate(
    model: Annotated[Path | None, typer.Option(help="Model folder.")] = None,
    features: Annotated[Path | None, typer.Option(help="Features folder.")] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="Evaluate emotion on a manifest / accepted table instead.")
    ] = None,
    split: Annotated[str | None, typer.Option(help="train | val | test | all")] = None,
    metrics_out: Annotated[Path | None, typer.Option(help="Metrics JSON to write.")] = None,
    params: ParamsOpt = Path("params.yaml"),
    progress: ProgressOpt = True,
) -> None:
    """Test-split metrics: intents, emotion, rules vs rules + model, ablation, confusion PNG."""
    p = _params(params)
    cfg = _override(p.evaluate, {"model": model, "features_dir": features, "split": split,
                                 "metrics_out": metrics_out})  # fmt: skip
    from callqa import tracking
    from callqa.model import evaluate as stage

    _configure_tracking(p.mlflow)
    try:
        with tracking.run("evaluate", tags={"callqa.stage": "evaluate"}):
            if manifest is not None:
                summary = stage.run_manifest(cfg, manifest, p.preprocess, progress=progress)
            else:
                from callqa.mlops.calls import call_level

                def score_calls(predictor, data, split):
                    return call_level(predictor, p, data, split, progress)

                summary = stage.run(cfg, score_calls)
    except (FileNotFoundError, ValueError) as err:
        raise _fail(str(err), 2) from None
    _print_summary("evaluate", summary)


@app.command()
def tune(
    n_trials: Annotated[
        int | None, typer.Option("--n-trials", help="Trials (this worker).")
    ] = None,
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL.")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Optuna search over the train params (short trainings); best params to a JSON file."""
    p = _params(params)
    cfg = _override(p.tune, {"n_trials": n_trials, "storage": storage})
    from callqa.model import tune as stage
    from callqa.model.dataset import TrainData

    try:
        data = TrainData.load(p.train.features_dir)
        summary = stage.run(cfg, p.train, p.mlflow, data)
    except (FileNotFoundError, ValueError) as err:
        raise _fail(str(err), 2) from None
    _print_summary("tune", summary)
