"""callqa.data.audio_checks: clipping runs, block streaming, clip bounds and per-file reasons."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from callqa.audio import signal_stats
from callqa.config import ValidateConfig
from callqa.data import audio_checks
from callqa.data.audio_checks import AudioStats, _RunCounter


def _naive_run_samples(mask: np.ndarray, min_run: int = 3) -> int:
    total = 0
    for row in mask:
        run = 0
        for v in list(row) + [False]:
            if v:
                run += 1
            else:
                total += run if run >= min_run else 0
                run = 0
    return total


def test_run_counter_is_independent_of_block_boundaries():
    rng = np.random.default_rng(0)
    mask = rng.random((2, 3000)) < 0.6  # many short and long runs
    expected = _naive_run_samples(mask)
    for _ in range(5):
        cuts = np.sort(rng.choice(np.arange(1, 3000), size=20, replace=False))
        counter = _RunCounter(2)
        for block in np.split(mask, cuts, axis=1):
            counter.add(block)
        assert counter.finish() == expected


@pytest.mark.parametrize(
    "fmt, subtype",
    [("WAV", "PCM_16"), ("WAV", "ULAW"), ("WAV", "PCM_U8"), ("FLAC", "PCM_24"),
     ("MP3", "MPEG_LAYER_III")],
)  # fmt: skip
def test_clipping_on_real_speech(tmp_path, monkeypatch, fmt, subtype, realdata):
    x, sr = sf.read(realdata / "asr" / "librivox_ss01_0870.wav", dtype="float32", always_2d=True)
    loud = x / np.abs(x).max() * 0.999  # peaks at full scale, but not clipped
    clipped = np.clip(8 * loud, -1, 1)
    shares = {}
    for name, audio in (("loud", loud), ("clipped", clipped)):
        path = tmp_path / f"{name}.{fmt.lower()}"
        sf.write(path, audio, sr, format=fmt, subtype=subtype)
        stats = audio_checks.measure_audio(path)
        decoded, _ = sf.read(path, dtype="float32", always_2d=True)
        # One definition of clipping: the streamed count equals audio.metrics on the whole file.
        assert stats.clipped_share == pytest.approx(signal_stats.clipped_share(decoded.T, subtype))
        monkeypatch.setattr(audio_checks, "IN_MEMORY_SAMPLES", 0)
        monkeypatch.setattr(audio_checks, "BLOCK_FRAMES", 777)
        assert audio_checks.measure_audio(path).clipped_share == pytest.approx(stats.clipped_share)
        monkeypatch.undo()
        shares[name] = stats.clipped_share
    assert shares["loud"] < 0.001
    assert shares["clipped"] > 0.02


def test_streaming_matches_whole_file(tmp_path, monkeypatch, realdata):
    x, sr = sf.read(realdata / "asr" / "librivox_ss01_0890.wav", dtype="float32", always_2d=True)
    x = x / np.abs(x).max()
    stereo = np.clip(np.concatenate([8 * x, 0.5 * x], axis=1), -1, 1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, sr, subtype="PCM_16")
    whole = audio_checks.measure_audio(path)
    monkeypatch.setattr(audio_checks, "IN_MEMORY_SAMPLES", 0)
    monkeypatch.setattr(audio_checks, "BLOCK_FRAMES", 1000)  # many blocks, runs cross boundaries
    streamed = audio_checks.measure_audio(path)
    assert streamed.frames == whole.frames == len(x)
    assert streamed.clipped_share == whole.clipped_share > 0.01
    assert (streamed.peak_pos, streamed.peak_neg) == (whole.peak_pos, whole.peak_neg)
    assert streamed.max_frame_dbfs == pytest.approx(whole.max_frame_dbfs, abs=1e-6)
    assert whole.max_frame_dbfs > -10


def test_clip_bounds():
    hi, lo = audio_checks.clip_bounds("PCM_16", 0.5, -1.0)
    assert 0.5 - 2**-14 < hi < 0.5 and -1.0 < lo < -1.0 + 2**-14
    assert audio_checks.clip_bounds("ULAW", 0.98, -0.98)[0] > 0.979  # peak level only
    assert audio_checks.clip_bounds("PCM_16", 0.0, 0.0) == (math.inf, -math.inf)  # silence


def test_file_reasons_follow_thresholds():
    cfg = ValidateConfig()
    ok = AudioStats(16000 * 3, 16000, 2, "PCM_16", max_frame_dbfs=-12.0, clipped_share=0.0)
    assert audio_checks.file_reasons(ok, cfg) == {}

    def codes(**changes) -> list[str]:
        fields = {**ok.__dict__, **changes}
        return sorted(audio_checks.file_reasons(AudioStats(**fields), cfg))

    assert codes(frames=4000) == ["too_short"]
    assert codes(channels=3) == ["too_many_channels"]
    assert codes(sample_rate_hz=6000, frames=18000) == ["sample_rate_too_low"]
    assert codes(max_frame_dbfs=-70.0) == ["silent"]
    assert codes(max_frame_dbfs=-math.inf) == ["silent"]
    assert codes(max_frame_dbfs=-45.0) == []  # quiet is not silent
    assert codes(clipped_share=0.05) == ["clipped"]
    assert codes(nonfinite=3, max_frame_dbfs=-math.inf) == ["nan_samples"]  # not also silent
