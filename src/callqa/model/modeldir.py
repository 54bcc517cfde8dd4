"""One model directory: weights (safetensors), config, label maps, thresholds, data lineage.

    models/callqa-qa/
      model.safetensors   the whole QAModel state (text encoder included)
      config.json         ModelSpec, FeatureSpec, the training params, best epoch, scores
      labels.json         {"intents": [...], "emotions": [...] (reported), "emotion_fine":
                          {extra head class: the reported emotion it counts toward, or null}}
      thresholds.json     {intent: decision threshold chosen on the validation split}
      data.json           sha256 of the training features, row counts, licences of the data

Written into a temporary folder and renamed into place, so a reader never sees half of one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from callqa.files import replace_dir, sha256_file, temp_path
from callqa.model.features import FeatureSpec
from callqa.model.fusion import ModelSpec

FILES = ("model.safetensors", "config.json", "labels.json", "thresholds.json", "data.json")


@dataclass
class SavedModel:
    spec: ModelSpec
    features: FeatureSpec
    thresholds: dict[str, float]
    config: dict
    data: dict
    path: Path

    @property
    def licenses(self) -> list[str]:
        return list(self.data.get("licenses", []))

    @property
    def emotion_temperature(self) -> float:
        """Emotion probabilities are softmax(logits / this) (fitted on the validation split;
        1 for models saved before it); `read` has checked it."""
        return float(self.config.get("emotion_temperature", 1.0))


def check_replaceable(out: Path) -> None:
    """Raise ValueError unless `out` is absent, empty or a folder of model files: a model
    folder is replaced whole, and files callqa did not write there must never go with it."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise ValueError(f"{out} is a file, not a model folder; write the model elsewhere (--out)")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in FILES)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ValueError(
            f"{out} holds files that are not part of a callqa model ({shown}); write the model "
            "elsewhere (--out) or empty that folder"
        )


def save(model, features: FeatureSpec, thresholds: dict, config: dict, data: dict, out: Path):
    """Write a model directory at `out` (replacing it atomically; `check_replaceable`)."""
    from safetensors.torch import save_file

    out = Path(out)
    check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(out.parent, out.name)
    tmp.mkdir()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / "model.safetensors"))
    spec = model.spec
    cfg = {"model": spec.as_dict(), "features": features.as_dict(), **config}
    _write(tmp / "config.json", cfg)
    labels = {"intents": spec.intents, "emotions": spec.emotions, "emotion_fine": spec.emotion_fine}
    _write(tmp / "labels.json", labels)
    _write(tmp / "thresholds.json", thresholds)
    _write(tmp / "data.json", data)
    replace_dir(tmp, out)
    return out


def _write(path: Path, value) -> None:
    """Strict JSON: a metric that could not be computed (NaN: no rows for it) is null."""
    text = json.dumps(_finite(value), indent=1, sort_keys=True, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def read(path: Path) -> SavedModel:
    """The directory's metadata (no weights). Raises FileNotFoundError / ValueError."""
    path = Path(path)
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{path}: not a callqa model directory (missing {', '.join(missing)}); "
            "train one with `make model` or `callqa train`"
        )
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
        thresholds = json.loads((path / "thresholds.json").read_text(encoding="utf-8"))
        data = json.loads((path / "data.json").read_text(encoding="utf-8"))
        spec = ModelSpec.from_dict(cfg["model"])
        features = FeatureSpec.from_dict(cfg["features"])
        thresholds = {str(k): float(v) for k, v in thresholds.items()}
        t = cfg.get("emotion_temperature", 1.0)
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t < float("inf"):
            raise ValueError("config.json: emotion_temperature is not a positive number")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: damaged model directory ({type(err).__name__}: {err})") from None
    return SavedModel(spec, features, thresholds, cfg, data, path)


INPUT_STATS = ("audio_shift", "audio_scale", "prosody_shift", "prosody_scale")


def load(path: Path, device: str = "cpu"):
    """(QAModel in eval mode on `device`, SavedModel)."""
    from safetensors.torch import load_file

    from callqa.model.fusion import QAModel

    saved = read(path)
    model = QAModel(saved.spec)
    try:
        state = load_file(str(Path(path) / "model.safetensors"))
        missing, unexpected = model.load_state_dict(state, strict=False)
    except Exception as err:  # noqa: BLE001 - safetensors' errors, torch's size mismatches
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ValueError(f"{path}: damaged model directory (model.safetensors: {first})") from None
    # saved before the input standardisation existed: those buffers stay the identity
    missing = [k for k in missing if k not in INPUT_STATS]
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not fit the saved config (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    return model.to(device).eval(), saved


def model_sha256(path: Path) -> str:
    """Identity of a model directory: sha256 over its files' digests."""
    import hashlib

    h = hashlib.sha256()
    for name in FILES:
        h.update(name.encode() + b"\0" + bytes.fromhex(sha256_file(Path(path) / name)))
    return h.hexdigest()
