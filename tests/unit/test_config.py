import pytest
from conftest import ROOT

from callqa.config import ConfigError, load_params, parse_params


def test_repo_params_load():
    p = load_params(ROOT / "params.yaml")
    assert p.validate_cfg.labels == ["angry", "happy", "sad", "neutral"]
    assert p.preprocess.channel_roles == ("agent", "customer")


def test_unknown_key_names_file_key_and_allowed(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("synth:\n  n_calss: 3\n")
    with pytest.raises(ConfigError) as err:
        load_params(f)
    msg = str(err.value)
    assert str(f) in msg and "synth.n_calss" in msg and "n_calls" in msg


def test_nested_unknown_key_lists_nested_allowed():
    with pytest.raises(ConfigError, match=r"preprocess\.vad\.thresh.*threshold"):
        parse_params({"preprocess": {"vad": {"thresh": 0.4}}})


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ({"transcribe": {"backend": "whisperx"}}, "'faster-whisper' or 'transformers'"),
        ({"synth": {"n_calls": "many"}}, "synth.n_calls"),
        ({"validate": {"min_accepted_share": 2}}, "validate.min_accepted_share"),
        ({"preprocess": {"channel_roles": ["agent", "agent"]}}, "agent"),
        # found from outside: out-of-range ASR filters dropped all speech with exit 0; a bad
        # compute type was blamed on transcribe.model; any language was accepted
        ({"transcribe": {"min_avg_logprob": 5}}, "transcribe.min_avg_logprob"),
        ({"transcribe": {"max_no_speech_prob": -1}}, "transcribe.max_no_speech_prob"),
        ({"transcribe": {"compute_type": "bogus"}}, "transcribe.compute_type"),
        ({"transcribe": {"language": "klingon"}}, "not a Whisper language code"),
        (
            {"nope": {}},
            "Allowed keys here: evaluate, featurize, flows, ingest, mlflow, preprocess, registry, "
            "review, score, serve, synth, train, transcribe, tune, validate",
        ),
    ],
)
def test_ill_typed_values_are_rejected(bad, fragment):
    with pytest.raises(ConfigError) as err:
        parse_params(bad)
    assert fragment in str(err.value)


def test_missing_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    f = tmp_path / "p.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_params(f)


def test_extends_lays_a_file_over_another(tmp_path):
    (tmp_path / "base.yaml").write_text("synth:\n  n_calls: 50\n  seed: 3\ntune:\n  n_trials: 9\n")
    (tmp_path / "sub").mkdir()
    top = tmp_path / "sub" / "demo.yaml"
    top.write_text("extends: ../base.yaml\nsynth:\n  n_calls: 8\n")
    p = load_params(top)
    assert (p.synth.n_calls, p.synth.seed, p.tune.n_trials) == (8, 3, 9)
    assert load_params(ROOT / "demo" / "params.yaml").synth.n_calls == 8


def test_extends_in_a_circle_or_to_nowhere_is_a_clear_error(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="circle"):
        load_params(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml: file not found"):
        load_params(tmp_path / "c.yaml")


def test_a_binary_file_or_a_folder_as_params_is_a_clear_error(tmp_path):
    binary = tmp_path / "call.wav"
    binary.write_bytes(bytes(range(128, 256)) * 4)
    with pytest.raises(ConfigError, match="not a text YAML file"):
        load_params(binary)  # was a UnicodeDecodeError traceback
    with pytest.raises(ConfigError, match="is a folder"):
        load_params(tmp_path)


def test_a_bad_value_in_an_extended_file_names_that_file_too(tmp_path):
    """Found from outside: the error blamed the overlay only (demo/params.yaml), not the file
    it extends where the bad value was."""
    (tmp_path / "base.yaml").write_text("synth:\n  channels: quadraphonic\n")
    (tmp_path / "top.yaml").write_text("extends: base.yaml\nsynth:\n  n_calls: 3\n")
    with pytest.raises(ConfigError, match="synth.channels") as err:
        load_params(tmp_path / "top.yaml")
    assert str(tmp_path / "base.yaml") in str(err.value)


def test_a_key_given_twice_is_a_clear_error(tmp_path):
    """Found from outside: `preprocess: {n_mels: 64, n_mels: 40}` ran with 40, no word said."""
    p = tmp_path / "params.yaml"
    p.write_text("preprocess:\n  n_mels: 64\n  n_mels: 40\n")
    with pytest.raises(
        ConfigError, match=r"key .n_mels. is given twice \(first at line 2\)[\s\S]*line 3"
    ):
        load_params(p)
