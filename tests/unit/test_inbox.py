"""The exactly-once inbox (callqa.mlops.inbox, `callqa inbox`): real rules-only Scorer, real
speech. Good files end in done/ with one result line each, bad ones in quarantine/ with their
reason, a duplicate is never scored twice, and a crash (a dead run's claim, a line written but
the file not moved, a real SIGKILL) resumes without losing or duplicating a call."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_callqa

from callqa.config import FlowsConfig, load_params
from callqa.files import sha256_file
from callqa.mlops import inbox
from callqa.mlops.inbox import Ledger, process_one, run_inbox, scan

GOOD = ["sr_english_one_two_three.wav", "ps_goforward.wav", "ps_cards_002.wav"]
OLD = time.time() - 60  # settled files: scan() need not wait for them


@pytest.fixture(scope="module")
def scorer():
    from callqa.pipeline import Scorer

    p = load_params(ROOT / "params.yaml")
    score = p.score.model_copy(
        update={"model": None, "scorecard": ROOT / "scorecards" / "default.yaml"}
    )
    return Scorer(p.preprocess, p.transcribe, score, p.validate_cfg)


class Counting:
    """A scorer that counts the calls it scores."""

    def __init__(self, scorer):
        self.scorer, self.paths = scorer, []

    def score_path(self, path):
        self.paths.append(Path(path).name)
        return self.scorer.score_path(path)


def _cfg(root: Path) -> FlowsConfig:
    return FlowsConfig(
        inbox_dir=root / "inbox",
        results_dir=root / "results",
        done_dir=root / "done",
        quarantine_dir=root / "quarantine",
        ledger=root / "ledger.sqlite",
    )


def _drop(cfg: FlowsConfig, src: Path | bytes, name: str) -> Path:
    dest = Path(cfg.inbox_dir) / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(src, bytes):
        dest.write_bytes(src)
    else:
        shutil.copyfile(src, dest)
    os.utime(dest, (OLD, OLD))
    return dest


def _cli_params(root: Path) -> FlowsConfig:
    """params.yaml in `root` for `callqa inbox` run there: rules only, the inbox under `root`."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["score"].update(model=None, scorecard=str(ROOT / "scorecards" / "default.yaml"))
    p["flows"].update(inbox_dir="inbox", results_dir="results", done_dir="done",
                      quarantine_dir="quarantine", ledger="ledger.sqlite")  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(p))
    return _cfg(root)


def _lines(cfg: FlowsConfig) -> list[dict]:
    path = Path(cfg.results_dir) / "results.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _names(folder) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir()) if Path(folder).is_dir() else []


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_good_bad_and_duplicates(tmp_path, realdata, scorer):
    cfg = _cfg(tmp_path)
    for name in GOOD[:2]:
        _drop(cfg, realdata / "asr" / name, name)
    _drop(cfg, os.urandom(4000), "garbage.wav")
    _drop(cfg, b"", "empty.wav")
    counting = Counting(scorer)
    summary = run_inbox(cfg, lambda: counting)
    assert (summary["scored"], summary["quarantined"], summary["failed"]) == (2, 2, 0)
    assert _names(cfg.inbox_dir) == []
    assert _names(cfg.done_dir) == sorted(GOOD[:2])
    quarantined = _names(cfg.quarantine_dir)
    assert quarantined == sorted(["empty.wav", "empty.wav.reason.txt", "garbage.wav",
                                  "garbage.wav.reason.txt"])  # fmt: skip
    for name in ("empty.wav", "garbage.wav"):
        code, message = (
            (Path(cfg.quarantine_dir) / f"{name}.reason.txt").read_text().split("\n")[:2]
        )
        assert re.fullmatch(r"[a-z_]+", code) and name in message
    lines = _lines(cfg)
    assert len(lines) == 2 and {Path(x["path"]).name for x in lines} == set(GOOD[:2])
    for line in lines:  # the result names where the call lives now; its report is written
        assert Path(line["path"]).parent == Path(cfg.done_dir) and Path(line["path"]).is_file()
        assert (Path(cfg.results_dir) / f"{line['call_id']}.html").is_file()

    # the same content again, under another name and under the same name: never scored again
    _drop(cfg, realdata / "asr" / GOOD[0], "again.wav")
    _drop(cfg, realdata / "asr" / GOOD[1], GOOD[1])
    _drop(cfg, (Path(cfg.quarantine_dir) / "garbage.wav").read_bytes(), "garbage2.wav")
    before = list(counting.paths)
    summary = run_inbox(cfg, lambda: counting)
    assert summary["duplicate"] == 3 and summary["scored"] == 0
    assert counting.paths == before and len(_lines(cfg)) == 2
    assert _names(cfg.inbox_dir) == []
    h = sha256_file(realdata / "asr" / GOOD[1])[:12]
    assert _names(cfg.done_dir) == sorted([*GOOD[:2], "again.wav", f"{h}-{GOOD[1]}"])
    assert "garbage2.wav" in _names(cfg.quarantine_dir)
    reason = (Path(cfg.quarantine_dir) / "garbage2.wav.reason.txt").read_text().split("\n")
    assert re.fullmatch(r"[a-z_]+", reason[0]) and "garbage.wav" in reason[1]


def test_crash_resumes_without_loss_or_duplicates(tmp_path, realdata, scorer):
    cfg = _cfg(tmp_path)
    ledger = Ledger(cfg.ledger)
    a, b, c = (_drop(cfg, realdata / "asr" / n, n) for n in GOOD)
    dead = _dead_pid()

    def left_by_dead_run(path: Path, **values) -> str:
        digest = sha256_file(path)
        assert ledger.claim(digest, path.name, str(Path(cfg.done_dir) / path.name))[0] == "new"
        ledger.update(digest, pid=dead, claimed_at=time.time() - 60, **values)
        return digest

    # a: claimed by a run killed after its result line was appended, before the ledger knew
    left_by_dead_run(a)
    line = scorer.score_path(a).result.model_copy(update={"path": str(Path(cfg.done_dir) / a.name)})
    inbox._append_result(
        Path(cfg.results_dir) / "results.jsonl", line.model_dump_json(), line.call_id, False
    )
    # c: the dead run wrote its line and moved the file; only "done" is missing in the ledger
    digest_c = left_by_dead_run(c, result_written=1)
    line_c = scorer.score_path(c).result.model_copy(
        update={"path": str(Path(cfg.done_dir) / c.name)}
    )
    inbox._append_result(
        Path(cfg.results_dir) / "results.jsonl", line_c.model_dump_json(), line_c.call_id, False
    )
    Path(cfg.done_dir).mkdir()
    c.rename(Path(cfg.done_dir) / c.name)

    # b: claimed by a run killed while scoring (and a half-written line after a's)
    left_by_dead_run(b)
    with open(Path(cfg.results_dir) / "results.jsonl", "a") as f:
        f.write('{"call_id": "cut short by SIGK')

    summary = run_inbox(cfg, lambda: scorer)
    assert summary["resumed"] == 3 and summary["failed"] == 0, summary
    assert _names(cfg.inbox_dir) == [] and _names(cfg.done_dir) == sorted(GOOD)
    lines = _lines(cfg)
    assert sorted(Path(x["path"]).name for x in lines) == sorted(GOOD)  # one line each
    assert ledger.counts() == {"done": 3}
    assert ledger.get(digest_c)["state"] == "done"


def test_ledger_claims(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    assert ledger.claim("h1")[0] == "new"
    assert ledger.claim("h1")[0] == "busy"  # this process is alive
    ledger.update("h1", claimed_at=time.time() - 60)
    assert ledger.claim("h1")[0] == "busy"  # old, but its process lives
    ledger.update("h1", pid=_dead_pid(), claimed_at=time.time() - 60)
    verdict, row = ledger.claim("h1")
    assert verdict == "reclaimed" and row["pid"] == os.getpid() and row["attempts"] == 2
    ledger.update("h1", state="done")
    assert ledger.claim("h1")[0] == "done"


def test_scan_waits_for_a_wav_shorter_than_its_header(tmp_path, realdata):
    """A copy that paused mid-file (older than the settle time) was scored as half a call or
    quarantined as no_speech; a truncated WAV is left until STALLED_COPY_S has passed."""
    cfg = _cfg(tmp_path)
    full = (realdata / "asr" / GOOD[0]).read_bytes()
    half = _drop(cfg, full[: len(full) // 2], "half.wav")
    _drop(cfg, full, "whole.wav")
    paused = time.time() - 30  # settled (no growth), but the writer may come back
    os.utime(half, (paused, paused))
    assert [p.name for p in scan(cfg)] == ["whole.wav"]
    stale = time.time() - inbox.STALLED_COPY_S - 5  # the writer is gone: judge it now
    os.utime(half, (stale, stale))
    assert [p.name for p in scan(cfg)] == ["half.wav", "whole.wav"]


def test_scan_skips_partial_hidden_and_growing(tmp_path, caplog):
    cfg = _cfg(tmp_path)
    for name in ("a.wav", "b.flac", "c.wav.part", ".d.wav", "notes.txt"):
        _drop(cfg, b"x", name)
    young = Path(cfg.inbox_dir) / "e.wav"
    young.write_bytes(b"settled but new")  # just written, unchanged over the check: taken
    with caplog.at_level("WARNING", logger="callqa.mlops.inbox"):
        assert [p.name for p in scan(cfg)] == ["a.wav", "b.flac", "e.wav"]
    assert "1 entries are not audio files" in caplog.text and "notes.txt" in caplog.text

    growing = Path(cfg.inbox_dir) / "f.wav"
    growing.write_bytes(b"x")
    import threading

    def grow():
        for _ in range(10):
            time.sleep(0.05)
            with open(growing, "ab") as f:
                f.write(b"more")

    t = threading.Thread(target=grow)
    t.start()
    names = [p.name for p in scan(cfg)]
    t.join()
    assert "f.wav" not in names


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun(tmp_path, realdata):
    """`callqa inbox --model local` killed with SIGKILL mid-run; the rerun accounts for every
    file exactly once (done/ or quarantine/, one result line per scored call)."""
    cfg = _cli_params(tmp_path)
    names = ["ps_cards_001.wav", "ps_cards_002.wav", "ps_cards_003.wav", *GOOD[:2]]
    for name in names:
        _drop(cfg, realdata / "asr" / name, name)
    _drop(cfg, os.urandom(3000), "garbage.wav")
    results = Path(cfg.results_dir) / "results.jsonl"

    args = [sys.executable, "-m", "callqa.cli", "inbox", "--model", "local"]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if results.exists() and results.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # into the next call
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    left = _names(cfg.inbox_dir)
    assert 0 < len(left) < len(names) + 1, left  # killed mid-run

    res = run_callqa(["inbox", "--model", "local"], tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    assert _names(cfg.inbox_dir) == []
    done = _names(cfg.done_dir)
    quarantined = [n for n in _names(cfg.quarantine_dir) if not n.endswith(".reason.txt")]
    assert sorted(done + quarantined) == sorted([*names, "garbage.wav"])  # each exactly once
    assert "garbage.wav" in quarantined and set(GOOD[:2]) <= set(done)
    for name in quarantined:
        assert (Path(cfg.quarantine_dir) / f"{name}.reason.txt").is_file()
    lines = _lines(cfg)
    assert sorted(Path(x["path"]).name for x in lines) == done  # one line per scored call
    assert len({x["call_id"] for x in lines}) == len(done)
    assert Ledger(cfg.ledger).counts() == {"done": len(done), "quarantined": len(quarantined)}


def test_process_one_returns_busy_for_a_live_claim(tmp_path, realdata):
    cfg = _cfg(tmp_path)
    path = _drop(cfg, realdata / "asr" / GOOD[0], GOOD[0])
    ledger = Ledger(cfg.ledger)
    ledger.claim(sha256_file(path))

    def never():
        raise AssertionError("a busy file must not be scored")

    assert process_one(path, never, cfg, ledger) == "busy"
    assert _names(cfg.inbox_dir) == [GOOD[0]]


def test_long_names_fit_and_a_later_pass_still_runs(tmp_path, realdata, scorer):
    """A legal 251-byte name: the file in done/ (taken name: hash prefix added) and the bad file's
    `.reason.txt` in quarantine/ must fit in 255 bytes, and the next pass must still score."""
    cfg = _cfg(tmp_path)
    long_stem = "é" * 20 + "a" * 207  # 247 bytes: multi-byte characters are cut whole
    good, bad = f"x{long_stem}.wav", f"{long_stem}.wav"
    Path(cfg.done_dir).mkdir(parents=True)
    shutil.copyfile(realdata / "asr" / GOOD[1], Path(cfg.done_dir) / good)  # the name is taken
    _drop(cfg, realdata / "asr" / GOOD[0], good)
    _drop(cfg, os.urandom(4000), bad)
    summary = run_inbox(cfg, lambda: scorer)
    assert (summary["scored"], summary["quarantined"], summary["failed"]) == (1, 1, 0)
    assert _names(cfg.inbox_dir) == []
    (line,) = _lines(cfg)
    assert Path(line["path"]).is_file() and len(Path(line["path"]).name.encode()) <= 255
    reasons = [n for n in _names(cfg.quarantine_dir) if n.endswith(".reason.txt")]
    assert len(reasons) == 1 and all(len(n.encode()) <= 255 for n in _names(cfg.quarantine_dir))

    _drop(cfg, realdata / "asr" / GOOD[2], "new_call.wav")
    assert run_inbox(cfg, lambda: scorer)["scored"] == 1 and len(_lines(cfg)) == 2


def test_a_file_it_may_not_read_is_quarantined_with_its_reason(tmp_path, realdata):
    """Mode 000 (real, even as root): quarantined as `unreadable` with its .reason.txt, exit 0;
    before, every pass ended in a traceback and the file stayed in the inbox."""
    cfg = _cli_params(tmp_path)
    _drop(cfg, realdata / "asr" / GOOD[0], "noread.wav").chmod(0)
    res = run_callqa(["inbox", "--model", "local"], tmp_path, obey_file_modes=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert _names(cfg.inbox_dir) == []
    assert _names(cfg.quarantine_dir) == ["noread.wav", "noread.wav.reason.txt"]
    code, message = (Path(cfg.quarantine_dir) / "noread.wav.reason.txt").read_text().split("\n")[:2]
    assert code == "unreadable" and "permissions" in message


def test_a_file_gone_before_it_was_hashed_is_gone_not_failed(
    tmp_path, realdata, monkeypatch, caplog
):
    """Found from outside: a second run found a file the first had just quarantined, raised
    FileNotFoundError, and said "1 file(s) failed; left in the inbox", which was false."""
    cfg = _cfg(tmp_path)
    kept = _drop(cfg, realdata / "asr" / GOOD[0], GOOD[0])
    taken = Path(cfg.inbox_dir) / "taken.wav"  # listed by the scan, then moved by another run
    monkeypatch.setattr(inbox, "scan", lambda cfg: [taken, kept])

    def never():
        raise AssertionError("nothing is scored: the ledger holds the other file as done")

    ledger = Ledger(cfg.ledger)
    ledger.claim(sha256_file(kept))
    ledger.update(sha256_file(kept), state="done")
    with caplog.at_level("INFO", logger="callqa.mlops.inbox"):
        summary = run_inbox(cfg, never)
    assert (summary["gone"], summary["duplicate"], summary["failed"]) == (1, 1, 0)
    assert "left in the inbox" not in caplog.text and "another run took it" in caplog.text


@pytest.mark.parametrize("state", ["done", "quarantined"])
def test_a_file_another_run_moved_between_hash_and_claim_is_gone(tmp_path, realdata, monkeypatch,
                                                                 state):  # fmt: skip
    """The other run finished the same file after this run hashed it: the ledger says done (or
    quarantined) and the file is no longer in the inbox. No error, no stray .reason.txt."""
    cfg = _cfg(tmp_path)
    path = _drop(cfg, realdata / "asr" / GOOD[0], GOOD[0])
    digest = sha256_file(path)
    folder = Path(cfg.done_dir if state == "done" else cfg.quarantine_dir)
    ledger = Ledger(cfg.ledger)
    ledger.claim(digest, path.name)
    ledger.update(digest, state=state, code="no_speech", message="no speech")

    def hash_then_the_other_run_moves_it(p):
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(p, folder / p.name)
        if state == "quarantined":
            (folder / f"{p.name}.reason.txt").write_text("no_speech\nno speech\n")
        return digest

    monkeypatch.setattr(inbox, "sha256_file", hash_then_the_other_run_moves_it)
    assert process_one(path, lambda: None, cfg, ledger) == "gone"
    other = [path.name] + ([f"{path.name}.reason.txt"] if state == "quarantined" else [])
    assert _names(folder) == other and _names(cfg.inbox_dir) == []
