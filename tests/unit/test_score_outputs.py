"""What `callqa score` writes never destroys what was there, and --resume never mixes runs.

Found from outside (fuzz round 3): `--out` set to an input replaced the recording with JSON; a
user's own index.html / summary.csv in --report-dir were replaced; --resume skipped a copy of a
scored recording under a new name (no line for it) and kept results of another scorecard.
"""

import json
import shutil

from conftest import ROOT
from typer.testing import CliRunner

from callqa.cli import app
from callqa.qa.index import summary_rows
from callqa.schemas import ErrorInfo, QAError

runner = CliRunner()
CLIP = "ps_goforward.wav"


def _score(*args):
    return runner.invoke(app, ["score", *map(str, args), "--params", str(ROOT / "params.yaml"),
                               "--no-progress"])  # fmt: skip


def test_an_out_that_is_an_input_or_not_a_results_file_is_refused_untouched(tmp_path, realdata):
    wav = tmp_path / "a.wav"
    shutil.copyfile(realdata / "asr" / CLIP, wav)
    audio = wav.read_bytes()
    res = _score(wav, "--out", wav, "--no-reports")
    assert res.exit_code == 2 and "one of the inputs" in res.output
    assert wav.read_bytes() == audio
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    res = _score(wav, "--out", notes, "--no-reports")
    assert res.exit_code == 2 and "not a callqa results file" in res.output
    assert notes.read_text() == "my notes\n"


def test_a_report_dir_with_someone_elses_index_is_refused_before_scoring(tmp_path, realdata):
    reports = tmp_path / "site"
    reports.mkdir()
    for name, text in (("index.html", "<h1>my own homepage</h1>"), ("summary.csv", "budget,1\n")):
        (reports / name).write_text(text)
        res = _score(realdata / "asr" / CLIP, "--out", tmp_path / "r.jsonl",
                     "--report-dir", reports)  # fmt: skip
        assert res.exit_code == 2 and "not written by callqa" in res.output, res.output
        assert (reports / name).read_text() == text
        assert not (tmp_path / "r.jsonl").exists()
        (reports / name).unlink()


def test_resume_scores_a_copy_under_a_new_name_and_refuses_another_scorecard(tmp_path, realdata):
    calls, out, reports = tmp_path / "calls", tmp_path / "results.jsonl", tmp_path / "reports"
    calls.mkdir()
    shutil.copyfile(realdata / "asr" / CLIP, calls / "a.wav")
    assert _score(calls / "a.wav", "--out", out, "--report-dir", reports).exit_code == 0
    shutil.copyfile(calls / "a.wav", calls / "copy of a.wav")  # same bytes, another input
    res = _score(calls, "--out", out, "--report-dir", reports, "--resume")
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["path"] for r in lines) == sorted(str(calls / n) for n in
                                                      ("a.wav", "copy of a.wav"))  # fmt: skip
    assert len({r["call_id"] for r in lines}) == 1  # one recording, two inputs
    # the index this run wrote is callqa's: the next run may replace it
    assert (reports / "index.html").is_file()
    # a different scorecard: resuming would mix two scorecards in one file
    card = tmp_path / "strict.yaml"
    card.write_text("checks:\n  - {id: must_say_go, role: any, type: phrase, keywords: [go]}\n")
    before = out.read_bytes()
    res = _score(calls, "--out", out, "--scorecard", card, "--resume", "--no-reports")
    assert res.exit_code == 2 and "another scorecard" in res.output
    assert out.read_bytes() == before


def test_summary_csv_cells_never_start_a_formula():
    err = QAError(path="=HYPERLINK(1).wav", call_id=None,
                  error=ErrorInfo(code="decode_failed", message="-1 frames"))  # fmt: skip
    _, rows = summary_rows([err])
    assert rows[0]["path"] == "'=HYPERLINK(1).wav"
    assert rows[0]["error"] == "decode_failed: -1 frames"  # starts with a letter: as it is
    err2 = err.model_copy(update={"path": "@cmd.wav"})
    assert summary_rows([err2])[1][0]["path"] == "'@cmd.wav"
