"""The one per-file cache: every key part misses when changed, interrupted writes are never
read, and `callqa cache info / clear` through the real CLI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from callqa.cache import STAGES, StageCache, library_versions, weights_id
from callqa.cli import app
from callqa.config import PreprocessConfig, TranscribeConfig, VadConfig
from callqa.files import content_id

SRC = Path(__file__).resolve().parents[2] / "src"
BASE = dict(
    code_version=3,
    params={"n_mels": 80, "vad": {"threshold": 0.5}},
    model="sha256:0123",
    device="cpu",
    compute_type="int8",
    libraries={"numpy": "2.4.6", "torch": "2.9.1"},
)


def _cache(root: Path, stage: str = "featurize", **changes) -> StageCache:
    return StageCache(stage, root=root, **{**BASE, **changes})


# ------------------------------------------------------------------------------- key parts


@pytest.mark.parametrize(
    "change",
    [
        {"params": {"n_mels": 64, "vad": {"threshold": 0.5}}},
        {"params": {"n_mels": 80, "vad": {"threshold": 0.6}}},
        {"code_version": 4},
        {"model": "sha256:4567"},
        {"device": "cuda"},
        {"compute_type": "float16"},
        {"libraries": {"numpy": "2.4.6", "torch": "2.10.0"}},
        {"libraries": {"numpy": "2.4.6", "torch": "2.9.1", "torchaudio": "2.9.1"}},
    ],
    ids=lambda c: f"{next(iter(c))}={next(iter(c.values()))}",
)
def test_changing_any_key_part_misses(tmp_path, change):
    base = _cache(tmp_path)
    base.put_json("aaaa000011112222", {"value": 1})
    assert base.get_json("aaaa000011112222") == {"value": 1}
    changed = _cache(tmp_path, **change)
    assert changed.get_json("aaaa000011112222") is None
    assert changed.get_json("aaaa000011112223") is None  # content is a key part too
    changed.put_json("aaaa000011112222", {"value": 2})  # both live side by side
    assert base.get_json("aaaa000011112222") == {"value": 1}
    assert changed.get_json("aaaa000011112222") == {"value": 2}


def test_other_content_misses_and_arrays_round_trip(tmp_path):
    cache = _cache(tmp_path)
    emb = np.arange(12, dtype=np.float32).reshape(3, 4)
    cache.put_arrays("c0ffee", {"emb": emb, "frames": np.array([1, 2])})
    got = cache.get_arrays("c0ffee")
    np.testing.assert_array_equal(got["emb"], emb)
    assert got["emb"].dtype == np.float32 and list(got["frames"]) == [1, 2]
    assert cache.get_arrays("c0ffef") is None


def test_weights_id_follows_the_bytes(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"n": 1}')
    (model / "model.bin").write_bytes(b"\x00" * 1000)
    first = weights_id(model)
    assert first.startswith("sha256:") and weights_id(model) == first
    (model / "model.bin").write_bytes(b"\x00" * 999 + b"\x01")  # same size, one byte changed
    os.utime(model / "model.bin", ns=(1, 1))  # even with the mtime of before
    assert weights_id(model) != first
    assert weights_id("tiny.en") == "tiny.en"  # a name, not a path: paired with a package version


def test_library_versions_reads_installed_packages():
    v = library_versions(["numpy", "libsndfile", "surely-not-installed-xyz"])
    assert v["numpy"] == np.__version__
    assert v["libsndfile"] == sf.__libsndfile_version__
    assert v["surely-not-installed-xyz"] is None


# ------------------------------------------------------------------------------- stages


def test_preprocess_key_follows_params_and_libraries(tmp_path):
    from callqa.audio.preprocess import CODE_VERSION, LIBRARIES, stage_cache

    cfg = PreprocessConfig()
    base = stage_cache(cfg, root=tmp_path).key("0123456789abcdef")
    assert base.code_version == CODE_VERSION >= 3  # batched VAD and DC removal were bumps
    assert base.model.startswith("silero-vad==") and base.device == "cpu"
    libs = library_versions(LIBRARIES)
    assert {"torch", "torchaudio", "silero-vad", "libsndfile"} <= set(base.libraries)
    newer = stage_cache(cfg, root=tmp_path, libraries={**libs, "torchaudio": "9.9"})
    assert newer.key("0123456789abcdef").name != base.name
    other = stage_cache(cfg.model_copy(update={"n_mels": 64}), root=tmp_path)
    assert other.key("0123456789abcdef").name != base.name


def test_validate_stats_follow_the_bytes_not_the_manifest_id(tmp_path, realdata):
    """The old cache trusted id + frame count: a file edited in place kept its stale stats."""
    from callqa.data.audio_checks import cached_measure, stats_cache

    x, sr = sf.read(realdata / "asr" / "jfk.flac", dtype="float32")
    path = tmp_path / "call.wav"
    sf.write(path, x, sr, subtype="PCM_16")
    vad = VadConfig()
    cache = stats_cache(vad, tmp_path / "cache")
    loud = cached_measure(str(path), cache, vad)
    assert cache.get_json(content_id(path)) is not None
    sf.write(path, x * 0.25, sr, subtype="PCM_16")  # same frames, quieter: new stats
    quiet = cached_measure(str(path), cache, vad)
    assert quiet.frames == loud.frames
    assert quiet.peak_pos == pytest.approx(loud.peak_pos * 0.25, abs=1e-3)
    libs = {**cache.key("x").libraries, "soundfile": "0.1"}
    assert stats_cache(vad, tmp_path / "cache", libs).get_json(content_id(path)) is None
    stricter = VadConfig(threshold=0.7)  # speech_s depends on the VAD settings
    assert stats_cache(stricter, tmp_path / "cache").get_json(content_id(path)) is None


@pytest.fixture(scope="module")
def backend():
    from callqa.asr.transcribe import load_backend

    return load_backend(TranscribeConfig(device="cpu", compute_type="int8"))


def test_asr_key_has_device_compute_type_model_and_libraries(tmp_path, backend):
    from callqa.asr.transcribe import CachedAsr

    cfg = TranscribeConfig(device="cpu", compute_type="int8")
    x, speech = np.zeros(16000, np.float32), [(0.1, 0.5)]
    base = CachedAsr(backend, cfg, root=tmp_path).key(x, speech)
    assert (base.device, base.compute_type) == ("cpu", "int8")
    assert base.model == weights_id(backend.model_id) and base.model.startswith("sha256:")
    assert {"faster-whisper", "ctranslate2"} <= set(base.libraries)
    names = {base.name}
    libs = {**base.libraries, "ctranslate2": "0.0"}
    names.add(CachedAsr(backend, cfg, root=tmp_path, libraries=libs).key(x, speech).name)
    beam1 = cfg.model_copy(update={"beam_size": 1})
    names.add(CachedAsr(backend, beam1, root=tmp_path).key(x, speech).name)
    names.add(CachedAsr(backend, cfg, root=tmp_path).key(x, [(0.1, 0.6)]).name)
    names.add(CachedAsr(backend, cfg, root=tmp_path).key(x + 1e-4, speech).name)
    assert len(names) == 5


def test_asr_key_differs_by_compute_type(tmp_path, backend):
    from callqa.asr.transcribe import CachedAsr, load_backend

    cfg32 = TranscribeConfig(device="cpu", compute_type="float32")
    x, speech = np.zeros(16000, np.float32), [(0.1, 0.5)]
    int8 = CachedAsr(backend, TranscribeConfig(device="cpu", compute_type="int8"), root=tmp_path)
    f32 = CachedAsr(load_backend(cfg32), cfg32, root=tmp_path)
    assert f32.key(x, speech).compute_type == "float32"
    assert f32.key(x, speech).name != int8.key(x, speech).name


# ------------------------------------------------------------------------------- interrupted


def test_truncated_or_damaged_file_entry_is_a_miss_then_replaced(tmp_path):
    cache = _cache(tmp_path)
    path = cache.put_json("abc123", {"words": ["hello"] * 50})
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    assert cache.get_json("abc123") is None
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # same length, one bit flipped
    assert cache.get_json("abc123") is None
    path.write_bytes(b"")
    assert cache.get_json("abc123") is None
    cache.put_json("abc123", {"words": ["again"]})
    assert cache.get_json("abc123") == {"words": ["again"]}


def test_exception_mid_write_publishes_nothing(tmp_path):
    cache = _cache(tmp_path, stage="preprocess")

    def half(tmp: Path) -> None:
        (tmp / "a.flac").write_bytes(b"x" * 100)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        cache.put_dir("f00d", half)
    assert cache.get_dir("f00d") is None
    assert list(cache.dir.iterdir()) == []  # no temp left behind either
    # an old entry survives a failed rewrite
    cache.put_dir("f00d", lambda tmp: (tmp / "a.flac").write_bytes(b"ok"))
    with pytest.raises(RuntimeError):
        cache.put_dir("f00d", half)
    assert (cache.get_dir("f00d") / "a.flac").read_bytes() == b"ok"


def test_damaged_folder_entry_is_a_miss_then_replaced(tmp_path):
    cache = _cache(tmp_path, stage="preprocess")
    folder = cache.put_dir("beef", lambda tmp: (tmp / "logmel.npy").write_bytes(b"y" * 64))
    (folder / "logmel.npy").write_bytes(b"y" * 32)  # truncated
    assert cache.get_dir("beef") is None
    cache.put_dir("beef", lambda tmp: (tmp / "logmel.npy").write_bytes(b"z" * 64))
    assert (cache.get_dir("beef") / "logmel.npy").read_bytes() == b"z" * 64
    (folder / "cache-entry.json").unlink()  # a folder copied without its manifest
    assert cache.get_dir("beef") is None


def test_killed_writer_leaves_only_a_temp_that_is_never_read(tmp_path):
    code = (
        "import time; from pathlib import Path; from callqa.cache import StageCache\n"
        f"c = StageCache('featurize', root=Path({str(tmp_path)!r}), **{BASE!r})\n"
        "def slow(tmp):\n"
        "    (tmp / 'part.npy').write_bytes(b'half')\n"
        "    (tmp / 'started').write_text('')\n"
        "    time.sleep(60)\n"
        "c.put_dir('dead0001', slow)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    cache = _cache(tmp_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(tmp_path.glob("featurize/.tmp-*/started")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(list(cache.dir.glob(".tmp-*"))) == 1
    assert cache.get_dir("dead0001") is None
    assert cache.sweep() == 1 and list(cache.dir.iterdir()) == []
    cache.put_dir("dead0001", lambda tmp: (tmp / "part.npy").write_bytes(b"whole"))
    assert (cache.get_dir("dead0001") / "part.npy").read_bytes() == b"whole"


def test_a_live_writers_temp_is_kept(tmp_path):
    cache = _cache(tmp_path)
    cache.dir.mkdir(parents=True)
    mine = cache.dir / f".tmp-{os.getpid()}-0000-x.bin"
    mine.write_bytes(b"in progress")
    assert cache.sweep() == 0 and mine.exists()


# ------------------------------------------------------------------------------- CLI


def test_cli_info_and_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("CALLQA_CACHE_DIR", str(tmp_path / "root"))
    runner = CliRunner()
    _cache(tmp_path / "root", stage="transcribe").put_json("a1", [1, 2, 3])
    _cache(tmp_path / "root", stage="transcribe").put_json("a2", [4])
    _cache(tmp_path / "root", stage="preprocess").put_dir(
        "b1", lambda tmp: (tmp / "x.flac").write_bytes(b"0" * 5000)
    )
    res = runner.invoke(app, ["cache", "info"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    rows = {line.split()[1]: line.split() for line in res.output.splitlines() if "│" in line}
    assert set(STAGES) <= set(rows)
    assert rows["transcribe"][3] == "2" and rows["preprocess"][3] == "1"
    assert rows["validate"][3] == "0"
    assert str(tmp_path / "root" / "preprocess") in res.output

    res = runner.invoke(app, ["cache", "clear", "nonsense"])
    assert res.exit_code == 2 and "unknown cache stage" in res.output
    assert len(list((tmp_path / "root" / "transcribe").iterdir())) == 2

    res = runner.invoke(app, ["cache", "clear", "transcribe"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "root" / "transcribe").exists()
    assert (tmp_path / "root" / "preprocess").exists()
    res = runner.invoke(app, ["cache", "clear"])
    assert res.exit_code == 0 and not (tmp_path / "root" / "preprocess").exists()


def test_clearing_the_cache_keeps_preprocess_outs_readable(tmp_path, realdata):
    import pandas as pd

    from callqa.audio.preprocess import load_prepared, run

    src = realdata / "asr" / "jfk.flac"
    accepted = tmp_path / "accepted.parquet"
    pd.DataFrame({"id": [content_id(src)], "path": [str(src)]}).to_parquet(accepted)
    kw = dict(accepted=accepted, out_dir=tmp_path / "out", progress=False)
    cfg = PreprocessConfig(progress=False)
    assert run(cfg, cache_dir=tmp_path / "c", **kw)["processed"] == 1
    shutil.rmtree(tmp_path / "c")  # what `callqa cache clear` does
    assert load_prepared(tmp_path / "out" / content_id(src)).tracks["mono"].size > 0
    assert run(cfg, cache_dir=tmp_path / "c", **kw)["processed"] == 1


def test_outs_follow_a_params_change_even_when_sizes_match(tmp_path, realdata):
    """target_lufs changes only the log-mel values: same files, same sizes, same prepared.json
    fields, so the out folder must be told apart by the cache key it was built from."""
    import pandas as pd

    from callqa.audio.preprocess import load_prepared, run

    src = realdata / "asr" / "jfk.flac"
    accepted = tmp_path / "accepted.parquet"
    pd.DataFrame({"id": [content_id(src)], "path": [str(src)]}).to_parquet(accepted)
    kw = dict(accepted=accepted, out_dir=tmp_path / "out", progress=False, cache_dir=tmp_path)
    out = tmp_path / "out" / content_id(src)
    run(PreprocessConfig(progress=False), **kw)
    loud = load_prepared(out).logmel
    assert run(PreprocessConfig(progress=False, target_lufs=-40.0), **kw)["processed"] == 1
    quiet = load_prepared(out).logmel
    assert quiet.shape == loud.shape and quiet.mean() < loud.mean() - 1.0
