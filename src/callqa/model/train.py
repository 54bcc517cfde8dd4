"""`callqa train`: fine-tune the multimodal QA model on featurize's utterances.

- Device auto (CUDA when present); bf16 autocast on GPUs that support it, else fp16 with a
  gradient scaler; CPU runs fp32, seeded and deterministic.
- Losses: intents BCE with pos_weight (agent rows only), emotion cross-entropy with class
  weights (rows with an emotion label only); gradient accumulation; AdamW, two learning rates
  (text encoder, the rest), linear warm-up and decay; whole modalities dropped at random in
  training so text-only rows, audio-only clips and the ablation work.
- Early stopping on validation macro-F1 (mean of intent macro-F1 and emotion macro-F1); per-
  intent decision thresholds are then chosen on the validation split.
- A checkpoint after every epoch in `<out_dir>.partial/`; a killed run started again with the
  same data and params resumes from it. DDP through torchrun (WORLD_SIZE > 1): each rank takes
  its share of every batch order, rank 0 writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from callqa.config import INTENTS, TrainConfig
from callqa.model.dataset import TrainData, batch_tensors
from callqa.model.metrics import choose_thresholds, fit_temperature, scores

logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    history: list[dict] = field(default_factory=list)
    out_dir: Path | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    val_metrics: dict = field(default_factory=dict)
    model: object = field(default=None, repr=False)  # the best model, in memory


def set_seed(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def emotions_of(data: TrainData) -> list[str]:
    """The emotion label map: featurize's label set, in its order of first appearance."""
    from callqa.config import EMOTIONS

    seen = [e for e in data.table["emotion"].dropna().unique().tolist()]
    ordered = [e for e in EMOTIONS if e in seen] + sorted(e for e in seen if e not in EMOTIONS)
    return ordered or list(EMOTIONS)


def fine_emotions_of(data: TrainData, emotions: list[str]) -> dict[str, str | None]:
    """Clips' own corpus labels outside `emotions` (column `emotion_fine`; featurize's
    `clip_fine_labels`), each with the reported emotion its clips carry (None: out of scope)."""
    t = data.table
    if "emotion_fine" not in t:
        return {}
    pairs = t.loc[t["emotion_fine"].notna(), ["emotion_fine", "emotion"]]
    fine: dict[str, str | None] = {}
    for f, e in sorted(pairs.drop_duplicates().itertuples(index=False, name=None), key=str):
        if f not in emotions:
            fine[f] = e if isinstance(e, str) else None
    return fine


def build_model(
    cfg: TrainConfig, data: TrainData, emotions: list[str], fine: dict | None = None
):  # fmt: skip
    from callqa.model.fusion import ModelSpec, QAModel

    spec = ModelSpec(
        intents=list(INTENTS),
        emotions=emotions,
        audio_dim=int(data.arrays["audio"].shape[1]),
        prosody_dim=int(data.arrays["prosody"].shape[1]),
        mel_shape=tuple(data.arrays["mel"].shape[1:]),
        text_encoder=cfg.text_encoder,
        hidden=cfg.hidden,
        dropout=cfg.dropout,
        fusion=cfg.fusion,
        freeze=cfg.freeze,
        top_k_layers=cfg.top_k_layers,
        lora_rank=cfg.lora_rank,
        emotion_fine=dict(fine or {}),
        emotion_linear=cfg.emotion_linear,
    )
    return QAModel(spec)


def text_prefixes(model, data: TrainData, device: str, batch_size: int = 128):
    """The frozen layers' output for every row (float16, on the CPU), or None when not usable."""
    import torch

    if not model.prefix_cacheable():
        return None
    ids = torch.from_numpy(data.arrays["input_ids"].astype(np.int64))
    mask = torch.from_numpy(data.arrays["attention_mask"].astype(np.int64))
    was = model.training
    model.eval()
    out = []
    for s in range(0, len(ids), batch_size):
        h = model.text_prefix(
            ids[s : s + batch_size].to(device), mask[s : s + batch_size].to(device)
        )
        out.append(h.to("cpu", torch.float16))
    model.train(was)
    return torch.cat(out) if out else None


def predict_probs(
    model, data: TrainData, device: str, batch_size: int = 128, present=None, prefix=None
):
    """(intent probabilities (n, k), emotion probabilities (n, m)) for every row of `data`
    (m: the reported emotions, `fusion.reported_logits`)."""
    import torch

    from callqa.model.fusion import reported_logits

    model.eval()
    pi, pe = [], []
    pres = data.present() if present is None else present
    with torch.no_grad():
        for s in range(0, len(data.table), batch_size):
            idx = np.arange(s, min(s + batch_size, len(data.table)))
            batch = batch_tensors(data, idx, device, pres[idx])
            if prefix is not None:
                batch["text_hidden"] = prefix[idx].to(device)
            li, le = model(batch)
            le = reported_logits(model.spec, le)
            pi.append(torch.sigmoid(li.float()).cpu().numpy())
            pe.append(torch.softmax(le.float(), dim=1).cpu().numpy())
    k, m = len(model.spec.intents), len(model.spec.emotions)
    return (
        np.concatenate(pi) if pi else np.zeros((0, k)),
        np.concatenate(pe) if pe else np.zeros((0, m)),
    )


# ------------------------------------------------------------------ training


def _dist():
    """(rank, world_size, local_rank); initialises torch.distributed under torchrun."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def _amp(cfg: TrainConfig, device: str):
    """(autocast dtype or None, use a GradScaler)."""
    import torch

    if not device.startswith("cuda") or cfg.amp == "off":
        return None, False
    if cfg.amp == "bf16" or (cfg.amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16, False
    return torch.float16, True


def _fingerprint(cfg: TrainConfig, data: TrainData) -> str:
    keep = cfg.model_dump(mode="json", exclude={"progress", "device", "threads", "out_dir"})
    return hashlib.sha256(json.dumps([keep, data.hashes], sort_keys=True).encode()).hexdigest()[:16]


def _loss_weights(train: TrainData, emotions: list[str], fine: list[str]):
    import torch

    lab = train.labels(emotions, fine)
    y = lab["intents"][lab["intent_mask"]]
    pos = y.sum(0)
    pos_weight = np.clip((len(y) - pos) / np.maximum(pos, 1), 1.0, 20.0)
    e = lab["emotion_head"][lab["emotion_head"] >= 0]
    n = len(emotions) + len(fine)
    counts = np.bincount(e, minlength=n).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n, 0.0)
    return torch.tensor(pos_weight, dtype=torch.float32), torch.tensor(w, dtype=torch.float32)


def _warn_thin(train: TrainData, emotions: list[str]) -> None:
    """Say so when a head has little or nothing to learn from (it still trains)."""
    t = train.table
    if not t["has_intents"].any():
        logger.warning("train: no agent turns with intent labels in the train split; the "
                       "intent head learns nothing (synth or label more calls)")  # fmt: skip
    counts = t["emotion"].value_counts()
    if len(counts) < 2:
        logger.warning("train: %s in the train split; the emotion head learns nothing useful",
                       "one emotion class" if len(counts) else "no emotion labels")  # fmt: skip
    elif missing := [e for e in emotions if counts.get(e, 0) == 0]:
        logger.warning("train: no train rows of %s (only validation rows); the model will not "
                       "predict it", ", ".join(missing))  # fmt: skip


def _read_checkpoint(ckpt_dir: Path, device: str) -> tuple[dict, dict] | None:
    """(the last epoch's checkpoint, the best weights) to resume from; None when there is
    none or it is damaged (cut short by a full disk, say): training starts afresh, saying so."""
    import torch

    last = ckpt_dir / "last.pt"
    if not last.exists():
        return None
    try:
        ck = torch.load(last, map_location=device, weights_only=False)
        best = torch.load(ckpt_dir / "best.pt", map_location="cpu", weights_only=False)
        if not isinstance(ck, dict) or not {"model", "opt", "sched", "state"} <= set(ck):
            raise ValueError("not a callqa checkpoint")
        return ck, best
    except Exception as err:  # noqa: BLE001 - torch.load raises many types on a damaged file
        logger.warning("train: ignoring the damaged checkpoint %s (%s); starting afresh", last,
                       type(err).__name__)  # fmt: skip
        return None


def fit(
    cfg: TrainConfig,
    data: TrainData,
    out_dir: Path | None,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> FitResult:
    """Train on the `train` split, stop early on `val`, save the best model to `out_dir`.

    `on_epoch(epoch, metrics)` is called after each epoch (metrics: train_loss, val_macro_f1,
    val_intent_f1, val_emotion_f1, epoch_s); it may raise (Optuna's TrialPruned) to stop.
    `out_dir=None` trains without writing anything (tuning trials).
    """
    import torch

    from callqa.model.features import resolve_device
    from callqa.progress import track

    rank, world, local_rank = _dist()
    device = resolve_device(cfg.device)
    if device == "cuda" and world > 1:
        device = f"cuda:{local_rank}"
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    if device == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)

    train_idx, val_idx = data.indices("train"), data.indices("val")
    if cfg.max_train_rows is not None and len(train_idx) > cfg.max_train_rows:
        train_idx = np.sort(
            np.random.default_rng(cfg.seed).choice(train_idx, cfg.max_train_rows, replace=False)
        )
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError(
            f"need train and val rows (have {len(train_idx)} train, {len(val_idx)} val): "
            "synth more calls or check featurize's splits"
        )
    train, val = data.subset(train_idx), data.subset(val_idx)
    emotions = emotions_of(data)
    fine = fine_emotions_of(data, emotions)
    _warn_thin(train, emotions)
    model = build_model(cfg, data, emotions, fine)
    heard = train.table["has_audio"].to_numpy(bool)
    model.set_input_stats(train.arrays["audio"][heard], train.arrays["prosody"][heard])
    model = model.to(device)
    pos_weight, emo_weight = (t.to(device) for t in _loss_weights(train, emotions, list(fine)))
    text_params = [p for p in model.text.parameters() if p.requires_grad]
    text_ids = {id(p) for p in model.text.parameters()}
    other = [p for p in model.parameters() if p.requires_grad and id(p) not in text_ids]
    groups = [{"params": other, "lr": cfg.head_lr}]
    if text_params:
        groups.append({"params": text_params, "lr": cfg.lr})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, int(np.ceil(len(train_idx) / world / cfg.batch_size / cfg.grad_accum)))
    total = steps_per_epoch * cfg.epochs
    warm = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warm) * max(0.05, 1 - max(0, s - warm) / max(1, total - warm)),
    )
    amp_dtype, use_scaler = _amp(cfg, device)
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.startswith("cuda") else None,
            find_unused_parameters=True,
        )  # fmt: skip

    ckpt_dir = Path(f"{out_dir}.partial") if out_dir is not None else None
    fp = _fingerprint(cfg, data)
    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "bad": 0, "history": []}
    best_state = None
    found = _read_checkpoint(ckpt_dir, device) if ckpt_dir is not None else None
    if found is not None:
        ck, best = found
        if ck.get("fingerprint") == fp:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            sched.load_state_dict(ck["sched"])
            state = ck["state"]
            torch.set_rng_state(ck["torch_rng"])  # dropout draws continue as if never stopped
            best_state = best
            logger.info("train: resumed after epoch %d from %s", state["epoch"], ckpt_dir)
        else:
            logger.info("train: %s holds another run's checkpoint; starting afresh", ckpt_dir)

    lab = train.labels(emotions, list(fine))
    present = train.present()
    prefix_train, prefix_val = (
        text_prefixes(model, train, device),
        text_prefixes(model, val, device),
    )
    gen = np.random.default_rng(cfg.seed)
    for _ in range(state["epoch"]):  # same batch orders after a resume
        gen.permutation(len(train_idx))
        gen.random((len(train_idx), 4))
    bce = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="none")
    ce = torch.nn.CrossEntropyLoss(weight=emo_weight, ignore_index=-1)
    while state["epoch"] < cfg.epochs and state["bad"] < cfg.patience:
        epoch = state["epoch"] + 1
        t0 = time.perf_counter()
        order = gen.permutation(len(train_idx))[rank::world]
        drop = gen.random((len(train_idx), 4)) < cfg.modality_dropout
        net.train()
        losses = []
        batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        for b, idx in enumerate(
            track(batches, f"train epoch {epoch}", enabled=cfg.progress and rank == 0)
        ):
            pres = present[idx].copy()
            d = drop[idx]
            d[:, 2] = d[:, 3] = d[:, 1]  # audio, mel and prosody come and go together
            keep_one = pres & ~d
            pres = np.where(keep_one.any(1, keepdims=True), keep_one, pres)
            batch = batch_tensors(train, idx, device, pres)
            if prefix_train is not None:
                batch["text_hidden"] = prefix_train[idx].to(device)
            with torch.autocast(
                device.split(":")[0], dtype=amp_dtype, enabled=amp_dtype is not None
            ):
                li, le = net(batch)
            yi = torch.from_numpy(lab["intents"][idx]).to(device)
            mi = torch.from_numpy(lab["intent_mask"][idx]).to(device)
            ye = torch.from_numpy(lab["emotion_head"][idx]).to(device)
            loss_i = (bce(li.float(), yi).mean(1) * mi).sum() / mi.sum().clamp_min(1)
            loss_e = ce(le.float(), ye) if bool((ye >= 0).any()) else le.sum() * 0.0
            loss = (loss_i + loss_e) / cfg.grad_accum
            (scaler.scale(loss) if scaler else loss).backward()
            if (b + 1) % cfg.grad_accum == 0 or b + 1 == len(batches):
                if scaler:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                opt.zero_grad(set_to_none=True)
                sched.step()
            losses.append(float(loss.detach()) * cfg.grad_accum)
        pi, pe = predict_probs(model, val, device, prefix=prefix_val)
        s = scores(val, pi, pe, emotions)
        metrics = {
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "val_macro_f1": s["macro_f1"],
            "val_intent_f1": s["intent_f1"],
            "val_emotion_f1": s["emotion_f1"],
            "epoch_s": round(time.perf_counter() - t0, 2),
        }
        state["history"].append({"epoch": epoch, **metrics})
        state["epoch"] = epoch
        if s["macro_f1"] > state["best"] + 1e-4:
            state.update(best=s["macro_f1"], best_epoch=epoch, bad=0)
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            state["bad"] += 1
        if ckpt_dir is not None and rank == 0:
            _checkpoint(
                ckpt_dir, fp, model, opt, sched, state, best_state, improved=state["bad"] == 0
            )
        logger.info("train: epoch %d %s", epoch, {k: round(v, 4) for k, v in metrics.items()})
        if on_epoch is not None:
            on_epoch(epoch, metrics)

    if best_state is not None:
        model.load_state_dict(best_state)
    pi, pe = predict_probs(model, val, device)
    thresholds = choose_thresholds(val, pi)
    val_metrics = scores(val, pi, pe, emotions, thresholds)
    y = val.labels(emotions)["emotion"]
    temperature = fit_temperature(pe[y >= 0], y[y >= 0])
    val_metrics["emotion_temperature"] = temperature
    result = FitResult(
        state["best_epoch"],
        state["best"],
        state["history"],
        out_dir,
        thresholds,
        val_metrics,
        model.eval(),
    )
    if out_dir is not None and rank == 0:
        _save(cfg, model, data, result, train_idx, val_idx)
        import shutil

        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return result


def _checkpoint(ckpt_dir: Path, fp, model, opt, sched, state, best_state, improved: bool) -> None:
    import torch

    from callqa.files import atomic_path

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    if improved or not (ckpt_dir / "best.pt").exists():
        with atomic_path(ckpt_dir / "best.pt") as tmp:
            torch.save(best_state, tmp)
    with atomic_path(ckpt_dir / "last.pt") as tmp:
        torch.save({"fingerprint": fp, "model": model.state_dict(), "opt": opt.state_dict(),
                    "sched": sched.state_dict(), "state": state,
                    "torch_rng": torch.get_rng_state()}, tmp)  # fmt: skip


def _save(cfg: TrainConfig, model, data: TrainData, result: FitResult, train_idx, val_idx) -> None:
    from callqa.model import modeldir
    from callqa.model.features import FeatureSpec

    spec_path = Path(cfg.features_dir) / "featurize.json"
    feat = FeatureSpec()
    if spec_path.exists():
        feat = FeatureSpec.from_dict(
            json.loads(spec_path.read_text()).get("feature_spec", feat.as_dict())
        )
    config = {
        "train": cfg.model_dump(mode="json"),
        "best_epoch": result.best_epoch,
        "val": result.val_metrics,
        # emotion probabilities are softmax(logits / this), fitted on the validation split
        "emotion_temperature": result.val_metrics.get("emotion_temperature", 1.0),
        "history": result.history,
    }
    info = {
        "features": data.hashes,
        "rows": {"train": int(len(train_idx)), "val": int(len(val_idx))},
        "licenses": data.licenses,
    }
    modeldir.save(model, feat, result.thresholds, config, info, Path(cfg.out_dir))
