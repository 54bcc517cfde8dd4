import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT
from typer.testing import CliRunner

from callqa.cli import app

runner = CliRunner()


def test_help_lists_one_command_per_stage():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("synth", "ingest", "validate", "preprocess", "transcribe", "score", "models"):
        assert cmd in res.output


@pytest.mark.parametrize(
    "args",
    [[], ["synth"], ["preprocess"], ["transcribe"], ["score"], ["models", "convert-whisper"]],
)
def test_help_shows_flags_without_type_hints(args):
    res = runner.invoke(app, [*args, "--help"])
    assert res.exit_code == 0
    assert "<bool>" not in res.output
    assert "--progress / --no-progress" in res.output or "--progress" not in res.output


def test_help_is_fast_and_imports_nothing_heavy():
    code = (
        "import sys, callqa.cli;"
        "heavy = [m for m in ('torch', 'great_expectations', 'faster_whisper', 'transformers')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_config_error_exits_2(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("synth:\n  colour: red\n")
    res = runner.invoke(app, ["synth", "--params", str(bad), "-n", "1", "--out", str(tmp_path)])
    assert res.exit_code == 2


def test_score_with_no_audio_exits_2(tmp_path):
    res = runner.invoke(
        app, ["score", str(tmp_path), "--params", str(ROOT / "params.yaml"), "--no-progress"]
    )
    assert res.exit_code == 2


def test_cli_sets_offline_and_no_telemetry_defaults(tmp_path):
    """Run by hand, outside make and pytest, the CLI itself turns telemetry off."""
    code = (
        "import json, os, sys\n"
        "from typer.testing import CliRunner\n"
        "from callqa.cli import app, OFFLINE_DEFAULTS\n"
        "res = CliRunner().invoke(app, ['schema', '--out', sys.argv[1]])\n"
        "assert res.exit_code == 0, res.output\n"
        "print(json.dumps({k: os.environ.get(k) for k in OFFLINE_DEFAULTS}))\n"
    )
    from callqa.cli import OFFLINE_DEFAULTS

    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_DEFAULTS}
    env["HF_HUB_OFFLINE"] = "0"  # a user who wants the hub keeps it
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "s.json")],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    seen = json.loads(out.stdout)
    assert seen == {**OFFLINE_DEFAULTS, "HF_HUB_OFFLINE": "0"}
    assert seen["GX_ANALYTICS_ENABLED"] == "false"


def test_score_with_a_file_as_report_dir_exits_2_before_scoring(tmp_path, realdata):
    """Found from outside: the call was transcribed, then its result replaced by report_failed."""
    not_a_folder = tmp_path / "report.html"
    not_a_folder.write_text("x")
    res = runner.invoke(app, [
        "score", str(realdata / "asr" / "jfk.flac"), "--params", str(ROOT / "params.yaml"),
        "--report-dir", str(not_a_folder), "--out", str(tmp_path / "out.jsonl"), "--no-progress",
    ])  # fmt: skip
    assert res.exit_code == 2 and "give a folder" in res.output
    assert not (tmp_path / "out.jsonl").exists()


def test_resume_into_a_file_that_is_not_a_results_file_exits_2(tmp_path, realdata):
    """Found from outside: --resume kept 50 kB of random bytes and appended a line to them."""
    out = tmp_path / "results.jsonl"
    junk = bytes(range(256)) * 40 + b"\n" + bytes(range(100))
    out.write_bytes(junk)
    res = runner.invoke(app, [
        "score", str(realdata / "asr" / "jfk.flac"), "--params", str(ROOT / "params.yaml"),
        "--out", str(out), "--resume", "--no-reports", "--no-progress",
    ])  # fmt: skip
    assert res.exit_code == 2 and "results file" in res.output
    assert out.read_bytes() == junk  # untouched


@pytest.mark.parametrize("uri", ["nonexistent:/x", "no/such/model/folder"])
def test_serve_with_a_model_uri_that_can_never_load_exits_2(tmp_path, uri):
    """Found from outside: it answered 503 "still loading" for ever."""
    res = runner.invoke(app, ["serve", "--model", uri, "--params", str(ROOT / "params.yaml")])
    assert res.exit_code == 2 and "--model" in res.output


def test_serve_on_a_port_already_taken_says_so_before_any_banner():
    """Found from outside: it printed "callqa serve: ... on http://..." and then uvicorn's error."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        res = runner.invoke(app, ["serve", "--model", "local", "--port", port,
                                  "--params", str(ROOT / "params.yaml")])  # fmt: skip
    assert res.exit_code == 3, res.output
    assert f"cannot listen on 127.0.0.1:{port}" in res.output
    assert "callqa serve:" not in res.output


@pytest.mark.parametrize("command", [["train", "--features", "no/such/features"],
                                     ["models", "convert-whisper"]])  # fmt: skip
def test_a_folder_holding_other_files_is_never_replaced_by_a_model(tmp_path, command):
    """Found from outside: `train --out DIR` / `convert-whisper --out DIR` deleted DIR's files."""
    mine = tmp_path / "my_notes"
    mine.mkdir()
    (mine / "thesis.txt").write_text("months of work")
    res = runner.invoke(app, [*command, "--out", str(mine)])
    assert res.exit_code == 2, res.output
    assert "thesis.txt" in res.output or "not a checkpoint callqa converted" in res.output
    assert (mine / "thesis.txt").read_text() == "months of work"


def test_a_best_params_file_is_checked_and_sets_only_searched_keys(tmp_path):
    from callqa.cli_model import apply_best_params
    from callqa.config import TrainConfig

    best = tmp_path / "best.json"
    cfg = TrainConfig()
    best.write_text(json.dumps({"params": {"dropout": 0.3, "batch_size": 16}}))
    assert apply_best_params(cfg, best).model_dump() == {
        **cfg.model_dump(), "dropout": 0.3, "batch_size": 16
    }  # fmt: skip
    for text in ("not json {", "[1, 2]", '{"params": "x"}',
                 '{"params": {"out_dir": "/elsewhere", "epochs": 1}}',
                 '{"params": {"dropout": 7}}'):  # fmt: skip
        best.write_text(text)
        res = runner.invoke(app, ["train", "--features", "no/such/features", "--params",
                                  str(_params_with(tmp_path, best))])  # fmt: skip
        assert res.exit_code == 2 and str(best) in res.output and "Traceback" not in res.output, (
            text, res.output,
        )  # fmt: skip


def _params_with(tmp_path, best) -> object:
    p = tmp_path / "params.yaml"
    p.write_text(f"extends: {ROOT / 'params.yaml'}\ntrain: {{best_params: {best}}}\n")
    return p
