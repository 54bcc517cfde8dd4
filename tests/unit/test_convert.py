"""CTranslate2 -> transformers conversion of the bundled Whisper tiny.en.

The converted model must compute what CTranslate2 computes: encoder outputs within 2e-4 of
CTranslate2 float32 on real speech, and the same greedy transcript as faster-whisper float32.
"""

import json

import numpy as np
import pytest

from callqa.asr.convert import (
    SOURCE_MARKER,
    ConversionError,
    bundled_ct2_dir,
    convert_whisper,
    read_ct2_model,
)


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("convert") / "whisper-tiny.en-hf"
    return convert_whisper(bundled_ct2_dir(), out)


@pytest.fixture(scope="module")
def jfk_16k(realdata):
    from callqa.audio.io import load_audio, resample, to_mono

    audio = load_audio(realdata / "asr" / "jfk.flac")
    return resample(to_mono(audio.samples), audio.sample_rate_hz, 16000)


@pytest.fixture(scope="module")
def hf_model(converted):
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(converted)
    model = WhisperForConditionalGeneration.from_pretrained(converted, dtype=torch.float32)
    return processor, model.eval()


def test_reads_every_variable_of_model_bin():
    variables = read_ct2_model(bundled_ct2_dir() / "model.bin")
    # 148 stored variables + the projection alias.
    assert len(variables) == 149
    assert variables["decoder/projection/weight"] is variables["decoder/embeddings/weight"]
    assert variables["decoder/embeddings/weight"].shape == (51864, 384)
    assert variables["encoder/conv1/weight"].dtype == np.float16
    assert int(variables["encoder/num_heads"]) == 6
    # transformers' k projections have no bias: the fused slices must be zero to drop them.
    for i in range(4):
        assert not variables[f"encoder/layer_{i}/self_attention/linear_0/bias"][384:768].any()
        assert not variables[f"decoder/layer_{i}/attention/linear_1/bias"][:384].any()


def test_writes_a_complete_checkpoint(converted):
    names = {p.name for p in converted.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
    # Nothing half-written is left beside it.
    assert [p.name for p in converted.parent.iterdir()] == [converted.name]
    config = json.loads((converted / "config.json").read_text())
    assert (config["d_model"], config["encoder_layers"], config["decoder_layers"]) == (384, 4, 4)
    assert (config["vocab_size"], config["encoder_attention_heads"]) == (51864, 6)
    gen = json.loads((converted / "generation_config.json").read_text())
    ct2 = json.loads((bundled_ct2_dir() / "config.json").read_text())
    assert gen["alignment_heads"] == ct2["alignment_heads"]
    assert gen["suppress_tokens"] == ct2["suppress_ids"]
    assert gen["begin_suppress_tokens"] == ct2["suppress_ids_begin"]
    assert gen["decoder_start_token_id"] == 50257
    assert gen["no_timestamps_token_id"] == 50362
    assert gen["is_multilingual"] is False


def test_tokenizer_matches_the_bundled_one(hf_model):
    from tokenizers import Tokenizer

    tokenizer = hf_model[0].tokenizer
    bundled = Tokenizer.from_file(str(bundled_ct2_dir() / "tokenizer.json"))
    text = " Ask not what your country can do for you, Mr. O'Neill: 1961!"
    assert (
        tokenizer(text, add_special_tokens=False).input_ids
        == bundled.encode(text, add_special_tokens=False).ids
    )
    assert len(tokenizer) == 51864
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|notimestamps|>"]) == [50256, 50362]
    assert tokenizer.convert_ids_to_tokens([50363, 51863]) == ["<|0.00|>", "<|30.00|>"]
    ids = [50257, 50362, *bundled.encode(" Hello there.", add_special_tokens=False).ids, 50256]
    assert tokenizer.decode(ids, skip_special_tokens=True) == " Hello there."


def test_feature_extractor_loads_offline(converted):
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor.from_pretrained(converted)
    assert (fe.feature_size, fe.sampling_rate, fe.hop_length) == (80, 16000, 160)


def test_encoder_matches_ctranslate2_float32(hf_model, jfk_16k):
    import ctranslate2
    import torch

    processor, model = hf_model
    features = processor.feature_extractor(
        jfk_16k, sampling_rate=16000, return_tensors="np"
    ).input_features.astype(np.float32)
    with torch.inference_mode():
        ours = model.get_encoder()(torch.from_numpy(features)).last_hidden_state.numpy()
    # float32 compute: int8 differs from the float16 weights by far more than 2e-4.
    ct2 = ctranslate2.models.Whisper(str(bundled_ct2_dir()), device="cpu", compute_type="float32")
    theirs = np.array(ct2.encode(ctranslate2.StorageView.from_array(features)))
    assert ours.shape == theirs.shape == (1, 1500, 384)
    assert np.abs(ours - theirs).max() < 2e-4


@pytest.mark.parametrize("features_from", ["transformers", "faster-whisper"])
def test_generate_matches_faster_whisper_float32_greedy(hf_model, jfk_16k, features_from):
    """Same log-mel input -> same greedy transcript.

    The two feature extractors differ slightly (seen: 0.54 max abs log-mel difference, enough
    to flip a comma), so each model gets the same features, from either extractor.
    """
    import ctranslate2
    import torch
    from faster_whisper import WhisperModel
    from faster_whisper.audio import pad_or_trim

    processor, model = hf_model
    fw = WhisperModel(str(bundled_ct2_dir()), device="cpu", compute_type="float32")
    if features_from == "transformers":
        features = processor.feature_extractor(
            jfk_16k, sampling_rate=16000, return_tensors="np"
        ).input_features
    else:
        features = pad_or_trim(fw.feature_extractor(jfk_16k))[None]
    features = np.ascontiguousarray(features, dtype=np.float32)

    with torch.inference_mode():
        ids = model.generate(torch.from_numpy(features), num_beams=1, do_sample=False)
    ours = processor.batch_decode(ids, skip_special_tokens=True)[0].strip()
    # faster-whisper's CTranslate2 model, greedy, with its prompt (<|startoftranscript|>
    # <|notimestamps|>) and its default suppression (-1 = the model's suppress_ids).
    result = fw.model.generate(
        ctranslate2.StorageView.from_array(features),
        [[50257, 50362]],
        beam_size=1,
        suppress_blank=True,
        suppress_tokens=[-1],
    )[0]
    theirs = fw.hf_tokenizer.decode(result.sequences_ids[0]).strip()
    assert ours == theirs
    assert "ask not what your country can do for you" in ours.lower()


def test_rejects_a_directory_without_a_model(tmp_path):
    with pytest.raises(ConversionError, match="model.bin"):
        convert_whisper(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_rejects_a_file_that_is_not_ctranslate2(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"\x06\x00\x00\x00" + b"\x00" * 3)
    with pytest.raises(ConversionError, match="truncated|not a Whisper"):
        read_ct2_model(bad)
    bad.write_bytes((99).to_bytes(4, "little") + b"\x00" * 16)
    with pytest.raises(ConversionError, match="version 99"):
        read_ct2_model(bad)


def test_reconverting_replaces_the_old_checkpoint_and_nothing_else(tmp_path):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(ConversionError, match="not a checkpoint callqa converted"):
        convert_whisper(bundled_ct2_dir(), out)  # a folder callqa did not write stays
    assert (out / "notes.txt").read_text() == "not a checkpoint"
    (out / "notes.txt").unlink()
    (out / SOURCE_MARKER).write_text("{}")  # an older conversion, with a file it left
    (out / "stale.txt").write_text("from an older conversion")
    convert_whisper(bundled_ct2_dir(), out)
    assert not (out / "stale.txt").exists()
    assert (out / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
