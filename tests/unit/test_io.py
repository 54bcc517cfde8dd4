"""Decoding: telephone codecs, containers soundfile cannot read, errors that say what to do."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from callqa.audio.io import AudioError, decode_bytes, load_audio


@pytest.fixture(scope="module")
def speech_8k(realdata) -> np.ndarray:
    x, sr = sf.read(realdata / "conversation" / "pyannote_sample.wav", dtype="float32")
    assert sr == 16000
    return x[::2]


@pytest.mark.parametrize(
    ("subtype", "fmt"),
    [("GSM610", "WAV"), ("PCM_U8", "WAV"), ("ULAW", "WAV"), ("ALAW", "WAV"), ("PCM_16", "AIFF")],
)
def test_telephone_codecs_decode_whole(tmp_path, speech_8k, subtype, fmt):
    path = tmp_path / f"call.{fmt.lower()}"
    sf.write(path, speech_8k, 8000, subtype=subtype, format=fmt)
    audio = load_audio(path)
    assert audio.sample_rate_hz == 8000 and audio.channels == 1
    assert audio.subtype == subtype
    # GSM is not seekable in libsndfile: it must still decode to the end, not fail.
    assert audio.samples.shape[1] == pytest.approx(len(speech_8k), abs=160)
    assert np.abs(audio.samples).max() > 0.05
    again = decode_bytes(path.read_bytes(), path.name)
    assert again.samples.shape == audio.samples.shape


def test_undecodable_container_says_how_to_convert(tmp_path):
    path = tmp_path / "voicemail.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00isomiso2" + bytes(2000))
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert err.value.code == "unreadable"
    assert "MP4/M4A" in err.value.message and "ffmpeg" in err.value.message


def test_random_bytes_and_text_are_not_audio(tmp_path):
    for name, data in [("noise.m4a", bytes(range(256)) * 10), ("notes.wav", b"hello there\n")]:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(AudioError) as err:
            load_audio(path)
        assert err.value.code == "not_audio" and name in err.value.message


@pytest.mark.parametrize(("from_hz", "to_hz"), [(8000, 16000), (16000, 8000), (44100, 16000)])
def test_resample_in_pieces_equals_one_pass(from_hz, to_hz):
    """Long signals are resampled piece by piece (memory): the samples must be the ones a
    single torchaudio call gives, bit for bit, pieces' edges and the ragged end included."""
    import torch
    import torchaudio.functional as AF

    from callqa.audio.io import resample

    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((2, 5 * 40_000 + 1234))).astype(np.float32)
    whole = AF.resample(torch.from_numpy(x), from_hz, to_hz).numpy()
    pieces = resample(x, from_hz, to_hz, chunk=40_000)
    assert pieces.shape == whole.shape and np.array_equal(pieces, whole)
    assert np.array_equal(resample(x[0], from_hz, to_hz, chunk=40_000), whole[0])


def test_stereo_read_block_by_block_equals_whole_read(tmp_path):
    from callqa.audio.io import read_planar

    rng = np.random.default_rng(1)
    x = (0.3 * rng.standard_normal((10_007, 2))).astype(np.float32)
    sf.write(tmp_path / "s.wav", x, 8000, subtype="ULAW")
    with sf.SoundFile(tmp_path / "s.wav") as f:
        whole = f.read(dtype="float32", always_2d=True).T
    with sf.SoundFile(tmp_path / "s.wav") as f:
        blocks = read_planar(f, block_frames=1000)
    assert blocks.flags.c_contiguous and np.array_equal(blocks, whole)
    assert np.array_equal(load_audio(tmp_path / "s.wav").samples, whole)
