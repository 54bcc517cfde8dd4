"""The DVC pipeline with real `dvc` on a clone of this repo: repro, a no-op second repro,
staleness (`dvc status -q`), push and pull against the default local remote, and
`dvc exp run -S` (synth -> ingest -> validate on two calls, to stay quick)."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT

pytestmark = pytest.mark.slow


def _run(args, cwd, check=True):
    env = {**os.environ, "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    d = tmp_path_factory.mktemp("dvc") / "callqa"
    _run(["git", "clone", "-q", str(ROOT), str(d)], ROOT)
    params = yaml.safe_load((d / "params.yaml").read_text())
    params["synth"]["n_calls"] = 2
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for args in (["git", "config", "user.email", "t@example.com"],
                 ["git", "config", "user.name", "test"],
                 ["git", "commit", "-qam", "two calls"]):  # fmt: skip
        _run(args, d)
    return d


def test_repro_status_push_pull_and_exp_run(repo):
    dvc = [sys.executable, "-m", "dvc"]

    def stale() -> bool:
        res = _run([*dvc, "status", "-q", "--with-deps", "validate"], repo, check=False)
        return res.returncode != 0

    _run([*dvc, "repro", "validate"], repo)
    assert len(pd.read_parquet(repo / "data" / "manifest.parquet")) == 2
    assert not stale()
    again = _run([*dvc, "repro", "validate"], repo).stdout
    assert "didn't change" in again and "Running stage" not in again

    # push to the default remote (dvc-remote/ in the repo), lose outputs and cache, pull back
    _run([*dvc, "push", "--with-deps", "validate"], repo)
    assert any((repo / "dvc-remote").rglob("*"))
    manifest = (repo / "data" / "manifest.parquet").read_bytes()
    for path in ("data/synth", "data/manifest.parquet", ".dvc/cache"):
        _run(["rm", "-rf", path], repo)
    assert stale()
    _run([*dvc, "pull", "--with-deps", "validate"], repo)
    assert (repo / "data" / "manifest.parquet").read_bytes() == manifest
    assert not stale()

    # a params change makes the stage stale; `dvc exp run -S` runs it and applies the result
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["synth"]["seed"] = 5
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert stale()
    _run(["git", "checkout", "params.yaml"], repo)
    _run([*dvc, "exp", "run", "-S", "synth.n_calls=3", "validate"], repo)
    assert len(pd.read_parquet(repo / "data" / "manifest.parquet")) == 3
    assert yaml.safe_load((repo / "params.yaml").read_text())["synth"]["n_calls"] == 3
