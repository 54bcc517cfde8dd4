"""Whisper base from two data wheels: assembled once into the cache, loaded by faster-whisper."""

import sys

import pytest

from callqa.asr.transcribe import load_backend
from callqa.asr.whisper_base import PARTS, base_ct2_dir, part_files
from callqa.audio.io import load_audio
from callqa.audio.prepare import prepare
from callqa.config import ConfigError, PreprocessConfig, TranscribeConfig


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return base_ct2_dir(tmp_path_factory.mktemp("cache-root"))


def test_assembled_model_bin_is_the_two_parts_joined(base_dir):
    parts = [f for f in part_files() if ".part" in f.name]
    assert [p.name for p in parts] == ["model.bin.part1", "model.bin.part2"]
    model = base_dir / "model.bin"
    assert model.stat().st_size == sum(p.stat().st_size for p in parts)
    with open(model, "rb") as f, open(parts[1], "rb") as tail:
        f.seek(parts[0].stat().st_size)
        assert f.read(1 << 16) == tail.read(1 << 16)  # part 2 starts right after part 1
    names = sorted(p.name for p in base_dir.iterdir())
    assert names == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]


def test_loads_with_faster_whisper_as_a_multilingual_model(base_dir):
    from faster_whisper import WhisperModel

    model = WhisperModel(str(base_dir), device="cpu", compute_type="int8", cpu_threads=2)
    assert model.model.is_multilingual


def test_truncated_model_bin_is_rebuilt(tmp_path):
    first = base_ct2_dir(tmp_path)
    size = (first / "model.bin").stat().st_size
    with open(first / "model.bin", "r+b") as f:
        f.truncate(size // 2)
    again = base_ct2_dir(tmp_path)
    assert again == first and (again / "model.bin").stat().st_size == size
    assert [p.name for p in tmp_path.joinpath("models").iterdir()] == ["whisper-base-ct2"]


def test_missing_package_names_the_setting(monkeypatch):
    module, dist, _files = PARTS[1]
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if it were not installed
    with pytest.raises(ConfigError, match=f"transcribe.model 'base'.*{dist}"):
        load_backend(TranscribeConfig(model="base", device="cpu"))


@pytest.mark.slow
def test_base_transcribes_english_through_the_backend(realdata):
    cfg = TranscribeConfig(model="base", device="cpu", language="en")
    backend = load_backend(cfg)
    assert backend.language == "en"
    prep = prepare(load_audio(realdata / "asr" / "jfk.flac"), PreprocessConfig())
    (track,) = prep.tracks.values()
    (speech,) = prep.speech.values()
    text = " ".join(s.text for s in backend.transcribe(track, speech)).lower()
    assert "ask not what your country can do for you" in text.replace(",", "")
