"""`callqa score` as a batch: what a folder expands to, and no input stopping the batch.

The batch tests run the real CLI in a child process on real speech (tiny.en, MiniLM, Silero).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, run_callqa

from callqa.config import ConfigError
from callqa.files import content_id
from callqa.pipeline import _load_model, expand_inputs
from callqa.schemas import json_schema

GOOD = ["librivox_ss01_0870.wav", "librivox_ss01_0880.wav", "ps_goforward.wav"]


def test_folders_expand_to_every_audio_like_file_in_order(tmp_path, caplog):
    calls = tmp_path / "calls"
    (calls / "sub").mkdir(parents=True)
    for name in ["b.wav", "a.AIFF", "sub/c.flac", "voicemail.m4a", "notes.txt", "x.json"]:
        (calls / name).write_bytes(b"x")
    (calls / "b.json").write_text("{}")  # a sidecar of b.wav: a companion, not skipped input
    (calls / "dangling.wav").symlink_to(calls / "gone.wav")
    (calls / "folder.wav").mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    single = tmp_path / "given.txt"
    with caplog.at_level(logging.WARNING):
        found = expand_inputs([single, calls, empty])
    names = [p.relative_to(tmp_path).as_posix() for p in found]
    # Files given by name are kept as given (they get an error line if they are not audio);
    # the m4a and the dangling link are listed so that they end with an error, not silently.
    assert names == [
        "given.txt", "calls/a.AIFF", "calls/b.wav", "calls/dangling.wav", "calls/sub/c.flac",
        "calls/voicemail.m4a",
    ]  # fmt: skip
    assert "no audio files" in caplog.text and "empty" in caplog.text
    # Files skipped for their extension are named, in one warning.
    skipped = [r.getMessage() for r in caplog.records if "not audio by their extension" in r.msg]
    assert len(skipped) == 1
    assert "notes.txt" in skipped[0] and "x.json" in skipped[0] and "b.json" not in skipped[0]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def bad_batch(tmp_path_factory, realdata):
    """A folder of good calls mixed with inputs that must each end as one error line."""
    root = tmp_path_factory.mktemp("score_batch")
    calls = root / "calls"
    calls.mkdir()
    for i, name in enumerate(GOOD):
        shutil.copyfile(realdata / "asr" / name, calls / f"good_{i}.wav")
    t = np.arange(8 * 8000) / 8000
    sf.write(calls / "tone.wav", 0.2 * np.sin(2 * np.pi * 425 * t), 8000)  # a ringback tone
    x, sr = sf.read(realdata / "asr" / "librivox_ss01_0890.wav", dtype="float32")
    sf.write(calls / "corrupt.flac", x[: 3 * sr], sr)
    data = bytearray((calls / "corrupt.flac").read_bytes())
    mid = len(data) // 2
    data[mid : mid + 2000] = np.random.default_rng(0).integers(0, 256, 2000, np.uint8).tobytes()
    (calls / "corrupt.flac").write_bytes(bytes(data))
    shutil.copyfile(realdata / "asr" / "ps_cards_002.wav", calls / "locked.wav")
    (calls / "locked.wav").chmod(0)
    (calls / "readme.txt").write_text("not audio")
    # A report that cannot be written: a folder sits where good_1's HTML report would go.
    reports = root / "reports"
    (reports / f"{content_id(calls / 'good_1.wav')}.html").mkdir(parents=True)
    out = root / "results.jsonl"
    args = ["score", str(calls), "--out", str(out), "--report-dir", str(reports)]
    res = run_callqa([*args, "--no-progress"], cwd=ROOT, obey_file_modes=True)
    return {"calls": calls, "out": out, "res": res, "reports": reports}


@pytest.mark.slow
def test_every_input_ends_as_exactly_one_line(bad_batch):
    res, calls = bad_batch["res"], bad_batch["calls"]
    assert res.returncode == 1, res.stderr  # some inputs failed, after writing every line
    lines = _lines(bad_batch["out"])
    expected = sorted(p for p in calls.iterdir() if p.suffix != ".txt")
    assert [line["path"] for line in lines] == [str(p) for p in expected]
    schema = json_schema()
    for line in lines:
        jsonschema.validate(line, schema)
    codes = {Path(x["path"]).name: x.get("error", {}).get("code") for x in lines}
    assert codes == {
        "corrupt.flac": "unreadable",
        "good_0.wav": None,
        "good_1.wav": "report_failed",
        "good_2.wav": None,
        "locked.wav": "unreadable",
        "tone.wav": "no_speech",
    }
    by_name = {Path(x["path"]).name: x for x in lines}
    assert "permission" in by_name["locked.wav"]["error"]["message"].lower()
    assert by_name["good_1.wav"]["call_id"] == content_id(calls / "good_1.wav")
    assert "readme.txt" in res.stderr and "skipped 1 file" in res.stderr
    assert (bad_batch["reports"] / "index.html").is_file()
    # Error lines never carry a stack trace.
    assert all("Traceback" not in json.dumps(x) for x in lines)


@pytest.mark.slow
def test_killed_score_resumes_with_every_input_once(tmp_path, realdata):
    calls = tmp_path / "calls"
    calls.mkdir()
    for i in range(8):  # 8 different recordings: 4 clips at two gains
        x, sr = sf.read(realdata / "asr" / [*GOOD, "librivox_ss01_0890.wav"][i % 4])
        sf.write(calls / f"call_{i}.wav", x * (0.5 + 0.3 * (i // 4)), sr)
    out = tmp_path / "results.jsonl"
    args = [sys.executable, "-m", "callqa.cli", "score", str(calls), "--out", str(out)]
    args += ["--no-reports", "--no-progress"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_file() and out.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = out.read_bytes()
    n_before = before.count(b"\n")
    assert 2 <= n_before < 8, "the kill should land part-way through the batch"

    res = run_callqa([*args[3:], "--resume"], cwd=ROOT)
    assert res.returncode == 0, res.stderr
    after = out.read_bytes()
    assert after.startswith(before[: before.rfind(b"\n") + 1])  # kept, not redone
    lines = _lines(out)
    assert sorted(x["path"] for x in lines) == sorted(str(p) for p in calls.iterdir())
    assert len(lines) == 8 and all("error" not in x for x in lines)
    # A second resume finds nothing to do.
    again = run_callqa([*args[3:], "--resume"], cwd=ROOT)
    assert again.returncode == 0 and out.read_bytes() == after


@pytest.mark.slow
def test_config_errors_exit_2_before_the_first_file(tmp_path, realdata):
    params = (ROOT / "params.yaml").read_text()
    audio = realdata / "asr" / "ps_goforward.wav"
    cases = {
        "transcribe.model": params.replace("  model: bundled", "  model: no-such-model"),
        "score.sentence_encoder": params.replace(
            "  sentence_encoder: bundled", "  sentence_encoder: no/such-encoder"
        ),
        "score.scorecard": params.replace(
            "  scorecard: scorecards/default.yaml", f"  scorecard: {tmp_path / 'bad.yaml'}"
        ),
        # A model folder that exists but holds no model is an error, not rules-only scoring.
        "score.model": params.replace(
            "  model: models/callqa-qa", f"  model: {tmp_path / 'not_a_model'}"
        ),
    }
    (tmp_path / "bad.yaml").write_text("checks: [\n")
    (tmp_path / "not_a_model").mkdir()
    for key, text in cases.items():
        assert text != params, key
        p = tmp_path / f"{key}.yaml"
        p.write_text(text)
        out = tmp_path / f"{key}.jsonl"
        res = run_callqa(["score", str(audio), "--out", str(out), "-p", str(p)], cwd=ROOT)
        assert res.returncode == 2, (key, res.stderr)
        assert key in res.stderr and "Traceback" not in res.stderr, res.stderr
        assert not out.exists()  # found before the first file
    # The transcribe stage loads its model before the first call, too.
    pre = tmp_path / "preprocessed"
    pre.mkdir()
    res = run_callqa(
        ["transcribe", "--preprocessed", str(pre), "--out", str(tmp_path / "tr"), "-p",
         str(tmp_path / "transcribe.model.yaml"), "--no-progress"], cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 2 and "transcribe.model" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_without_a_trained_model_scoring_uses_the_rules_only(tmp_path, caplog, monkeypatch):
    with caplog.at_level(logging.INFO, logger="callqa"):
        assert _load_model(tmp_path / "models" / "callqa-qa") is None
        assert _load_model(None) is None  # score.model: null
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"no trained model at {tmp_path / 'models' / 'callqa-qa'}: scoring with rules only "
        "(train one with `make model`)"
    ]
    # the default folder before `make model`: INFO; a path set by hand (a typo?): WARNING
    caplog.clear()
    monkeypatch.chdir(tmp_path)  # no models/callqa-qa here
    with caplog.at_level(logging.INFO, logger="callqa"):
        _load_model(Path("models/callqa-qa"))
        _load_model(tmp_path / "m14modle")
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="score.model = .*empty.*not a callqa model directory"):
        _load_model(tmp_path / "empty")


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory) -> Path:
    """A model directory with untrained weights (seed 0) and near-zero thresholds: nothing is
    trained, and every agent segment is a hit for every intent, so each `model` check fires."""
    import torch

    from callqa.config import EMOTIONS, INTENTS
    from callqa.model import modeldir
    from callqa.model.audio_features import PROSODY_DIM, embed_spans, load_whisper_encoder
    from callqa.model.features import FeatureSpec
    from callqa.model.fusion import ModelSpec, QAModel

    encoder = load_whisper_encoder("bundled", device="cpu")
    audio_dim = embed_spans(encoder, np.zeros(16000, np.float32), [(0.0, 1.0)]).shape[1]
    torch.manual_seed(0)
    # FeatureSpec's speaker context doubles audio and prosody (each + its deviation)
    spec = ModelSpec(list(INTENTS), list(EMOTIONS), 2 * audio_dim, 2 * PROSODY_DIM, hidden=32)
    out = tmp_path_factory.mktemp("models") / "untrained"
    thresholds = dict.fromkeys(INTENTS, 1e-6)
    return modeldir.save(QAModel(spec), FeatureSpec(), thresholds, {}, {"licenses": []}, out)


@pytest.mark.slow
def test_scorer_with_a_model_adds_emotion_model_and_probability_evidence(
    untrained_model, realdata, tmp_path
):
    from callqa.config import EMOTIONS, load_params
    from callqa.model.modeldir import model_sha256
    from callqa.pipeline import Scorer

    p = load_params(ROOT / "params.yaml")
    audio = realdata / "overlap" / "fw_stereo_diarization.wav"
    score_cfg = p.score.model_copy(update={"scorecard": ROOT / "scorecards" / "default.yaml"})
    with_model = Scorer(
        p.preprocess, p.transcribe, score_cfg.model_copy(update={"model": untrained_model})
    ).score_path(audio)
    rules = Scorer(p.preprocess, p.transcribe, score_cfg.model_copy(update={"model": None}))
    rules_only = rules.score_path(audio).result
    res = with_model.result
    assert res.model.path == str(untrained_model)
    assert res.model.sha256 == model_sha256(untrained_model)
    for role in ("agent", "customer"):
        emotion = getattr(res.emotion, role)
        assert emotion.label in EMOTIONS and set(emotion.scores) == set(EMOTIONS)
        assert abs(sum(emotion.scores.values()) - 1) < 1e-3
    # Every agent segment reaches the near-zero thresholds: the model flags forbidden
    # language the rules do not find, with each segment's probability as evidence.
    agent = [s for s in res.segments if s.role == "agent"]
    check = {c.id: c for c in res.checks}["forbidden_language"]
    assert {c.id: c for c in rules_only.checks}["forbidden_language"].passed is True
    assert check.passed is False and "threshold 0.00 (model)" in check.detail
    assert [(e.start, e.role) for e in check.evidence] == [(s.start, "agent") for s in agent]
    assert all(0 < e.probability < 1 for e in check.evidence)
    schema = json_schema()
    line = json.loads(res.model_dump_json())
    jsonschema.validate(line, schema)
    plain = json.loads(rules_only.model_dump_json())
    assert "emotion" not in plain and "model" not in plain
    jsonschema.validate(plain, schema)


def test_two_copies_of_a_call_are_two_rows_of_the_index(tmp_path, realdata):
    """Found from outside: the JSONL had both copies, index.html and summary.csv only one."""
    calls = tmp_path / "calls"
    calls.mkdir()
    for name in ("a.wav", "copy of a.wav"):
        shutil.copyfile(realdata / "asr" / "ps_goforward.wav", calls / name)
    out, reports = tmp_path / "results.jsonl", tmp_path / "reports"
    args = ["score", str(calls), "--out", str(out), "--report-dir", str(reports), "--no-progress"]
    res = run_callqa(args, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(_lines(out)) == 2
    summary = (reports / "summary.csv").read_text(encoding="utf-8").splitlines()
    assert len(summary) == 3 and "copy of a.wav" in "\n".join(summary)
