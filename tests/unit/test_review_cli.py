"""`callqa review import | add-user` in process: what a results line may bring into the review
database, and which user names are accepted."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from review_data import make_result, write_call
from typer.testing import CliRunner

from callqa.cli import app
from callqa.review.store import ReviewStore, User

runner = CliRunner()


@pytest.fixture
def params(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"review": {"db_url": f"sqlite:///{tmp_path / 'review.db'}"}}))
    return path


def _store(tmp_path) -> ReviewStore:
    return ReviewStore(f"sqlite:///{tmp_path / 'review.db'}")


def test_import_checks_each_line_and_keeps_only_audio_paths(tmp_path, params):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-KEY\n")
    fake = tmp_path / "fake.wav"  # an audio name, not audio
    fake.write_text("TOP-SECRET-KEY\n")
    (tmp_path / "folder.wav").mkdir()
    os.mkfifo(tmp_path / "pipe.wav")  # reading it would never end
    call = write_call(tmp_path / "call.wav")
    good = "0123456789abcdef"
    lines = [
        json.dumps({"path": str(secret)}),  # no call_id: once a KeyError that stopped it all
        json.dumps(make_result("deadbeefdeadbeef", path=str(secret))),
        json.dumps(make_result("deadbeefdeadbee0", path=str(fake))),
        json.dumps(make_result("deadbeefdeadbee1", path=str(tmp_path / "folder.wav"))),
        json.dumps(make_result("deadbeefdeadbee2", path=str(tmp_path / "pipe.wav"))),
        json.dumps(make_result("deadbeefdeadbee3", path=str(tmp_path / "gone.wav"))),
        json.dumps(make_result("../../x", path=str(call))),
        json.dumps(make_result("DEADBEEFDEADBEEF", path=str(call))),
        json.dumps(make_result(good, path=str(call))),
    ]
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    res = runner.invoke(app, ["review", "import", str(tmp_path / "results.jsonl"),
                              "--params", str(params), "--report-dir", str(tmp_path)])  # fmt: skip
    assert res.exit_code == 1, res.output
    out = " ".join(res.output.split())
    for number in range(1, 9):
        assert f"line {number}:" in out
    assert "line 9:" not in out and "invalid_skipped │ 3" in res.output
    assert "stored without a player" in out
    assert "TOP-SECRET" not in res.output and "secret.txt" not in res.output
    # results whose path is not audio here are kept (no result lost), with nothing to serve
    rows = sorted(_store(tmp_path).queue().rows, key=lambda r: r.call_id)
    assert [(r.call_id, r.audio_path) for r in rows] == [
        (good, str(call)), *((f"deadbeefdeadbee{c}", None) for c in "0123f"),
    ]  # fmt: skip


def test_add_user_refuses_blank_padded_and_case_twin_names(tmp_path, params, monkeypatch):
    monkeypatch.setenv("CALLQA_REVIEW_PASSWORD", "correct horse")

    def add(name: str):
        return runner.invoke(app, ["review", "add-user", name, "--params", str(params)])

    assert add("ana").exit_code == 0
    for bad in ("", " ", "  ", " bo", "bo ", "b\to", "b\x00o", "b\no"):
        res = add(bad)
        assert res.exit_code == 2, repr(bad)
        assert res.output.count("\n") == 1 and "error:" in res.output
    res = add("ANA")
    assert res.exit_code == 2 and "'ana' exists already" in res.output
    store = _store(tmp_path)
    assert [u.username for u in store.session().query(User)] == ["ana"]
    # a database made before names were compared without case keeps both log-ins working
    with store.session() as s:
        s.add(User(username="ANA", password_hash=store.get_user("ana").password_hash,
                   role="reviewer"))  # fmt: skip
        s.commit()
    assert store.authenticate("ana", "correct horse").username == "ana"
    assert store.authenticate("ANA", "correct horse").username == "ANA"
    assert add("Ana").exit_code == 2
