"""Preprocessing core (roles, tracks, VAD, stats, log-mel) and the cached stage on real audio."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from callqa.audio.io import Audio, AudioError, load_audio, resample
from callqa.audio.prepare import condition, log_mel, prepare, spectral_gate, split_roles
from callqa.audio.preprocess import load_prepared, run, stage_cache
from callqa.audio.signal_stats import loudness_lufs
from callqa.config import PreprocessConfig, VadConfig
from callqa.files import content_id

CFG = PreprocessConfig(progress=False)


@pytest.fixture(scope="module")
def stereo_path(realdata) -> Path:
    return realdata / "overlap" / "fw_stereo_diarization.wav"


@pytest.fixture(scope="module")
def speech16k(realdata):
    """Loads a fresh copy of 16 kHz real speech (tests may change it in place)."""

    def load() -> np.ndarray:
        x, sr = sf.read(realdata / "asr" / "librivox_ss01_0870.wav", dtype="float32")
        assert sr == 16000
        return x

    return load


@pytest.fixture(scope="module")
def files(tmp_path_factory, speech16k, stereo_path, realdata) -> dict[str, Path]:
    """Real speech in the layouts calls come in (written once for the module)."""
    d = tmp_path_factory.mktemp("audio")
    x = speech16k()
    out = {"stereo": stereo_path, "jfk": realdata / "asr" / "jfk.flac"}
    out["ulaw8k"] = d / "phone_ulaw_8k.wav"
    sf.write(out["ulaw8k"], resample(x, 16000, 8000), 8000, subtype="ULAW")
    out["same"] = d / "same_both_channels.wav"
    sf.write(out["same"], np.stack([x, x], axis=1), 16000, subtype="PCM_16")
    out["one_silent"] = d / "right_channel_silent.flac"
    sf.write(out["one_silent"], np.stack([x, np.zeros_like(x)], axis=1), 16000, subtype="PCM_16")
    return out


# ------------------------------------------------------------------------------- roles, tracks


def _dc_free(x: np.ndarray) -> np.ndarray:
    return x - x.mean(dtype=np.float64)


def test_stereo_split_into_roles_untouched_audio(stereo_path):
    audio = load_audio(stereo_path)
    p = prepare(audio, CFG)
    assert p.roles_from == "channels" and p.mono_reason is None and not p.mono
    assert list(p.tracks) == ["agent", "customer"]
    # already 16 kHz PCM_16: the role audio is the decoded channel, only its DC removed (no
    # filtering, no normalisation)
    np.testing.assert_allclose(p.tracks["agent"], _dc_free(audio.samples[0]), atol=1 / 32768)
    np.testing.assert_allclose(p.tracks["customer"], _dc_free(audio.samples[1]), atol=1 / 32768)
    assert p.speech["customer"][0][0] == pytest.approx(0.3, abs=0.2)
    assert p.logmel.shape == (2, CFG.n_mels, 1 + audio.samples.shape[1] // CFG.hop_length)
    assert p.logmel.dtype == np.float32 and np.isfinite(p.logmel).all()
    assert (p.duration_s, p.sample_rate_hz, p.channels) == (5.0, 16000, 2)
    for stats in p.input_stats.values():
        assert set(stats) == {"loudness_lufs", "clipped_share", "snr_db", "peak", "rms_dbfs"}
        assert -40 < stats["loudness_lufs"] < -15 and stats["clipped_share"] == 0.0
        assert stats["snr_db"] > 5


def test_channel_roles_param_swaps_channels(stereo_path):
    audio = load_audio(stereo_path)
    p = prepare(audio, CFG.model_copy(update={"channel_roles": ("customer", "agent")}))
    assert list(p.tracks) == ["agent", "customer"]  # track order stays agent, customer
    np.testing.assert_allclose(p.tracks["agent"], _dc_free(audio.samples[1]), atol=1 / 32768)


def test_mono_8khz_mulaw_phone_file(files, speech16k):
    audio = load_audio(files["ulaw8k"])
    assert audio.subtype == "ULAW" and audio.sample_rate_hz == 8000
    p = prepare(audio, CFG)
    assert p.roles_from == "diarization" and p.mono_reason == "mono_file"
    assert list(p.tracks) == ["mono"] and p.tracks["mono"].size == 2 * audio.samples.shape[1]
    assert (p.sample_rate_hz, p.channels) == (8000, 1)
    ref = prepare(Audio(speech16k()[None], 16000, "PCM_16"), CFG)
    # telephone band and companding change little: the same speech is found
    assert p.speech["mono"][0][0] == pytest.approx(ref.speech["mono"][0][0], abs=0.15)
    assert p.speech["mono"][-1][1] == pytest.approx(ref.speech["mono"][-1][1], abs=0.15)
    stats = p.input_stats["mono"]
    assert stats["clipped_share"] < 1e-4 and stats["peak"] < 1.0
    assert stats["loudness_lufs"] == pytest.approx(
        ref.input_stats["mono"]["loudness_lufs"], abs=1.5
    )


def test_identical_or_one_silent_channel_is_mono(files, speech16k):
    for key, reason in [
        ("same", "identical_channels"),
        ("jfk", "identical_channels"),
        ("one_silent", "silent_channel"),
    ]:
        p = prepare(load_audio(files[key]), CFG)
        assert (p.roles_from, p.mono_reason, list(p.tracks)) == ("diarization", reason, ["mono"])
        assert p.channels == 2 and p.logmel.shape[0] == 1
    x = speech16k()
    # the silent channel is dropped, not mixed in at -6 dB
    p = prepare(load_audio(files["one_silent"]), CFG)
    np.testing.assert_allclose(p.tracks["mono"], _dc_free(x), atol=1 / 32768)


def test_a_quiet_party_who_speaks_little_keeps_its_channel(speech16k):
    """Found from outside: 2.5 s of quiet speech (peaks near -27 dBFS) in a 120 s channel has a
    whole-file RMS under -60 dBFS; the call went to diarization and the customer's words were
    lost. A channel is silent when its loudest second is; a few clicks do not make it live.
    (Here peaks at -30 dBFS.)"""
    x = speech16k()
    sr, n = 16000, 120 * 16000
    left = np.zeros(n, np.float32)
    left[: x.size] = x
    right = np.zeros(n, np.float32)
    quiet = x[: int(2.5 * sr)] * (10 ** (-30 / 20) / np.abs(x).max())
    right[40 * sr : 40 * sr + quiet.size] = quiet
    from callqa.audio.signal_stats import rms_dbfs

    assert rms_dbfs(right) < -60  # the old rule's "silent"
    tracks, _, reason = split_roles(np.stack([left, right]))
    assert reason is None and list(tracks) == ["agent", "customer"]
    echo = np.zeros(n, np.float32)  # the other party's line echo, 40 dB down: nobody
    echo[: x.size] = x * 10 ** (-40 / 20)
    assert split_roles(np.stack([left, echo]))[2] == "silent_channel"
    clicks = np.zeros(n, np.float32)
    clicks[[sr, 50 * sr, 90 * sr]] = 0.5  # three one-sample clicks on a dead line
    _, _, reason = split_roles(np.stack([left, clicks]))
    assert reason == "silent_channel"


def test_the_same_mix_a_few_ms_apart_is_one_signal(speech16k, files):
    """Found from outside: a dual-mono export skewed by 1 ms correlates near 0 at lag 0 and was
    scored as two parties talking over each other, every word twice."""
    x = speech16k()
    for lag in (16, 320, -200):  # 1 ms, 20 ms, the other channel first
        y = np.roll(x, lag)
        tracks, rows, reason = split_roles(np.stack([x, y]))
        assert reason == "identical_channels" and rows["mono"] == [0, 1]
        np.testing.assert_array_equal(tracks["mono"], x)  # one channel: a mix would comb
    assert split_roles(load_audio(files["stereo"]).samples)[2] is None  # two real talkers


def test_more_than_two_channels_are_mixed_down(speech16k):
    x = speech16k()
    rng = np.random.default_rng(0)
    three = np.stack([x, np.roll(x, 4000), rng.standard_normal(x.size).astype(np.float32) * 0.01])
    tracks, rows, reason = split_roles(three)
    assert reason == "mixdown" and list(tracks) == ["mono"] and rows["mono"] == [0, 1, 2]
    np.testing.assert_allclose(tracks["mono"], three.mean(axis=0))


def test_nan_samples_rejected(speech16k):
    x = speech16k()[None].copy()
    x[0, 100] = np.nan
    with pytest.raises(AudioError) as err:
        prepare(Audio(x, 16000, "FLOAT"), CFG)
    assert err.value.code == "nan_samples"


# ------------------------------------------------------------------------------- conditioning


def test_condition_normalises_loudness_and_keeps_silence_finite(speech16k):
    x = speech16k()
    for gain in (0.05, 1.0):
        y = condition(x * gain, CFG)
        assert loudness_lufs(y, 16000) == pytest.approx(CFG.target_lufs, abs=0.3)
        assert np.abs(y).max() <= 1.0
    quiet_target = CFG.model_copy(update={"target_lufs": -35.0})
    assert loudness_lufs(condition(x, quiet_target), 16000) == pytest.approx(-35.0, abs=0.3)
    silent = condition(np.zeros(16000, np.float32), CFG)
    assert np.isfinite(silent).all() and not silent.any()
    assert condition(np.zeros(0, np.float32), CFG).size == 0


def test_spectral_gate_lowers_noise_keeps_speech(speech16k):
    pause = np.zeros(2 * 16000, np.float32)  # a call has pauses the noise profile comes from
    x = np.concatenate([pause, speech16k(), pause])
    noise = (np.random.default_rng(1).standard_normal(x.size) * 0.005).astype(np.float32)
    gated = spectral_gate(x + noise, 16000)
    gap, talk = slice(0, int(1.8 * 16000)), slice(int(2.4 * 16000), int(9.0 * 16000))
    residual_db = 10 * np.log10(np.mean((gated - x)[gap] ** 2) / np.mean(noise[gap] ** 2))
    assert residual_db < -10
    kept_db = 10 * np.log10(np.mean(gated[talk] ** 2) / np.mean(x[talk] ** 2))
    assert abs(kept_db) < 1.0


def test_log_mel_chunks_match_one_pass(speech16k):
    x = speech16k()[: 16000 * 2]
    whole = log_mel(x, CFG)
    np.testing.assert_allclose(log_mel(x, CFG, chunk_frames=37), whole, atol=1e-4)
    assert whole.shape == (CFG.n_mels, 1 + x.size // CFG.hop_length)
    # a clip shorter than one window plus its padding (a truncated file, 8 kHz upsampled)
    for n in (10, CFG.n_fft // 2 + 1, CFG.n_fft, 312, CFG.n_fft + CFG.n_fft // 2 + 1):
        assert log_mel(x[:n], CFG).shape == (CFG.n_mels, 1 + n // CFG.hop_length)


def test_cache_key_ignores_paths_and_speed():
    def name(cfg: PreprocessConfig) -> str:
        return stage_cache(cfg).key("0123456789abcdef").name

    base = name(CFG)
    assert name(CFG.model_copy(update={"out_dir": Path("x"), "workers": 4})) == base
    assert name(CFG.model_copy(update={"vad": VadConfig(threshold=0.6)})) != base
    assert name(CFG.model_copy(update={"denoise": True})) != base


# ------------------------------------------------------------------------------- stage


def _accepted(tmp: Path, paths: list[Path], name: str = "accepted.parquet") -> Path:
    df = pd.DataFrame({"id": [content_id(p) for p in paths], "path": [str(p) for p in paths]})
    out = tmp / name
    df.to_parquet(out)
    return out


def _run(tmp: Path, accepted: Path, **kw) -> dict:
    return run(
        CFG, accepted=accepted, out_dir=tmp / "out", progress=False, cache_dir=tmp / "cache", **kw
    )


def test_stage_writes_outputs_and_second_run_skips_all(tmp_path, files):
    paths = [files["stereo"], files["ulaw8k"], files["same"]]
    accepted = _accepted(tmp_path, paths)
    first = _run(tmp_path, accepted)
    assert (first["n_files"], first["processed"], first["cached"], first["failed"]) == (3, 3, 0, 0)
    assert first["audio_s"] == pytest.approx(5.0 + 2 * sf.info(files["same"]).duration, abs=0.01)

    cid = content_id(files["stereo"])
    folder = tmp_path / "out" / cid
    assert sorted(os.listdir(folder)) == [
        "agent.flac",
        "customer.flac",
        "logmel.npy",
        "prepared.json",
    ]
    loaded = load_prepared(folder)
    fresh = prepare(load_audio(files["stereo"]), CFG)
    for role in ("agent", "customer"):
        np.testing.assert_array_equal(loaded.tracks[role], fresh.tracks[role])
    assert loaded.speech == fresh.speech
    np.testing.assert_allclose(loaded.logmel, fresh.logmel, atol=0.02)  # float16 on disk
    assert loaded.input_stats == fresh.input_stats and loaded.roles_from == "channels"
    # only the call folders: downstream stages list them
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(map(content_id, paths))

    mtime = (folder / "logmel.npy").stat().st_mtime_ns
    second = _run(tmp_path, accepted)
    assert (second["processed"], second["cached"], second["failed"]) == (0, 3, 0)
    assert (folder / "logmel.npy").stat().st_mtime_ns == mtime
    # outs are rebuilt from the cache: `dvc repro` deletes them first
    import shutil

    shutil.rmtree(tmp_path / "out")
    third = _run(tmp_path, accepted)
    assert (third["processed"], third["cached"]) == (0, 3)
    assert load_prepared(folder).speech == loaded.speech
    entry = next((tmp_path / "cache" / "preprocess").glob(f"{cid}-*"))
    assert (entry / "logmel.npy").stat().st_ino == (folder / "logmel.npy").stat().st_ino


def test_corrupted_cache_entry_is_redone(tmp_path, files):
    paths = [files["stereo"], files["ulaw8k"]]
    accepted = _accepted(tmp_path, paths)
    _run(tmp_path, accepted)
    cid = content_id(files["ulaw8k"])
    entry = next((tmp_path / "cache" / "preprocess").glob(f"{cid}-*"))
    data = (entry / "logmel.npy").read_bytes()
    (tmp_path / "out" / cid / "logmel.npy").unlink()  # break the hard link first
    (entry / "logmel.npy").write_bytes(data[: len(data) // 2])  # truncated
    again = _run(tmp_path, accepted)
    assert (again["processed"], again["cached"], again["failed"]) == (1, 1, 0)
    assert load_prepared(tmp_path / "out" / cid).logmel.shape[0] == 1
    (entry / "prepared.json").write_text("{not json")
    assert _run(tmp_path, accepted)["processed"] == 1


def test_bad_files_are_reported_and_the_run_goes_on(tmp_path, files, speech16k):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(64))
    gone = tmp_path / "gone.wav"
    sf.write(gone, speech16k(), 16000)
    accepted = _accepted(tmp_path, [files["stereo"], garbage, gone])
    gone.unlink()
    summary = _run(tmp_path, accepted)
    assert (summary["processed"], summary["failed"]) == (1, 2)
    codes = sorted(f["code"] for f in summary["failures"])
    assert codes == ["missing_file", "unreadable"]
    assert all(f["message"] for f in summary["failures"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [content_id(files["stereo"])]
    assert not (tmp_path / "out" / content_id(garbage)).exists()


def test_changed_file_and_dropped_ids(tmp_path, files, speech16k):
    x = speech16k()
    moving = tmp_path / "moving.wav"
    sf.write(moving, x, 16000)
    accepted = _accepted(tmp_path, [files["stereo"], moving])
    old_id = content_id(moving)
    assert _run(tmp_path, accepted)["processed"] == 2
    sf.write(moving, x * 0.5, 16000)  # edited after ingest
    summary = _run(tmp_path, accepted)
    assert summary["failures"][0]["code"] == "content_changed"
    assert not (tmp_path / "out" / old_id).exists()  # no stale output under the old id
    _run(tmp_path, _accepted(tmp_path, [files["stereo"]]))
    assert [d.name for d in (tmp_path / "out").iterdir() if d.is_dir()] == [
        content_id(files["stereo"])
    ]


def test_killed_run_resumes_without_redoing_done_files(tmp_path, realdata):
    # four 30 s calls (same speech, different gain: different content ids)
    src, sr = sf.read(realdata / "conversation" / "pyannote_sample.wav", dtype="float32")
    paths = []
    for i in range(4):
        p = tmp_path / f"call{i}.wav"
        sf.write(p, src * (0.5 + 0.1 * i), sr)
        paths.append(p)
    accepted = _accepted(tmp_path, paths)
    code = (
        "from pathlib import Path; from callqa.audio.preprocess import run; "
        "from callqa.config import PreprocessConfig; "
        f"run(PreprocessConfig(), accepted=Path({str(accepted)!r}), "
        f"out_dir=Path({str(tmp_path / 'out')!r}), progress=False, "
        f"cache_dir=Path({str(tmp_path / 'cache')!r}))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    entries = tmp_path / "cache" / "preprocess"
    deadline = time.monotonic() + 120
    done: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        done = (
            [d for d in entries.glob("*") if not d.name.startswith(".")] if entries.exists() else []
        )
        if done:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = [d for d in entries.glob("*") if not d.name.startswith(".")]
    assert 1 <= len(done) <= 4
    summary = _run(tmp_path, accepted)
    assert summary["failed"] == 0
    assert summary["cached"] == len(done) and summary["processed"] == 4 - len(done)
    assert not list(entries.glob(".tmp-*")) and not list((tmp_path / "out").glob(".tmp-*"))
    for p in paths:
        assert load_prepared(tmp_path / "out" / content_id(p)).tracks["mono"].size == 30 * 16000


@pytest.mark.slow
def test_workers_give_the_same_outputs(tmp_path, files):
    paths = [files["stereo"], files["ulaw8k"], files["same"]]
    accepted = _accepted(tmp_path, paths)
    cfg2 = CFG.model_copy(update={"workers": 2})
    summary = run(
        cfg2,
        accepted=accepted,
        out_dir=tmp_path / "out2",
        progress=False,
        cache_dir=tmp_path / "cache2",
    )
    assert (summary["processed"], summary["failed"]) == (3, 0)
    one = _run(tmp_path, accepted)
    assert one["processed"] == 3
    for p in paths:
        a = load_prepared(tmp_path / "out2" / content_id(p))
        b = load_prepared(tmp_path / "out" / content_id(p))
        assert a.speech == b.speech
        np.testing.assert_array_equal(a.logmel, b.logmel)


def test_a_dc_offset_changes_neither_roles_nor_speech(realdata):
    """Cheap sound cards add DC: the VAD must find the same turns, a silent channel stays silent."""
    x, sr = sf.read(realdata / "conversation" / "pyannote_sample.wav", dtype="float32")
    clean = prepare(Audio(x[None], sr, "PCM_16"), CFG, with_logmel=False)
    shifted = prepare(Audio((x * 0.5 + 0.3)[None], sr, "PCM_16"), CFG, with_logmel=False)
    assert len(shifted.speech["mono"]) == len(clean.speech["mono"]) >= 2
    for (s0, e0), (s1, e1) in zip(clean.speech["mono"], shifted.speech["mono"], strict=True):
        assert abs(s0 - s1) < 0.15 and abs(e0 - e1) < 0.15
    # the SNR and level are of the voice: the offset read as noise (-27 dB SNR for clean speech)
    a, b = clean.input_stats["mono"], shifted.input_stats["mono"]
    assert abs(a["snr_db"] - b["snr_db"]) < 1.0
    assert abs(a["rms_dbfs"] - 6.02 - b["rms_dbfs"]) < 0.1
    offset_channel = np.full_like(x, 0.2)  # DC alone, no voice
    stereo = prepare(Audio(np.stack([x, offset_channel]), sr, "PCM_16"), CFG, with_logmel=False)
    assert stereo.mono_reason == "silent_channel"
