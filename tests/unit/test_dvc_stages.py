"""dvc.yaml is complete: every code file and params.yaml key a stage reads is one of its deps.

What a stage reads is found, not listed by hand: the callqa modules its CLI command imports,
followed through every import (lazy ones inside functions too), plus the data files inside
those packages, plus the params sections the command reads. A stage that misses one would let
`dvc repro` reuse a stale output.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from callqa.config import load_params

SRC = ROOT / "src"
CLI_FILES = tuple(SRC / "callqa" / f"{name}.py" for name in ("cli", "cli_model", "cli_review"))
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
PARAM_ALIASES = {"validate_cfg": "validate"}  # pydantic field name -> params.yaml section
# stage -> (its command, its params section) where they are not `callqa <stage>`, <stage>
SUBCOMMAND = {"export": ("callqa review export", "review")}


def _module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(tree: ast.AST) -> set[str]:
    """callqa modules imported anywhere in `tree` (`from callqa.qa import x` -> callqa.qa.x)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("callqa")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("callqa"):
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if _module_file(m) is not None}


def _command(name: str) -> ast.FunctionDef:
    for cli in CLI_FILES:
        tree = ast.parse(cli.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == name:
                return node
    raise AssertionError(f"the CLI has no command function {name!r}")


def files_read(stage: str) -> set[Path]:
    """Source files reached from the stage's command, and data files in their packages."""
    todo, seen = list(_imports(_command(stage))), set()
    while todo:
        name = todo.pop()
        if name in seen or name.startswith("callqa.cli"):
            continue
        seen.add(name)
        path = _module_file(name)
        todo += _imports(ast.parse(path.read_text(encoding="utf-8")))
    files = {_module_file(m) for m in seen}
    for folder in {f.parent for f in files}:  # package data: non-Python files beside the code
        files |= {
            f for f in folder.glob("*")
            if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts
        }  # fmt: skip
    return {f for f in files if f.name != "__init__.py" or f.stat().st_size}


def params_read(stage: str) -> set[str]:
    """params.yaml keys the command reads: `p.<section>[.<key>]` or `_params(...).<section>`."""
    keys = set()
    nodes = list(ast.walk(_command(stage)))
    inner = {id(n.value) for n in nodes if isinstance(n, ast.Attribute)}  # part of a longer chain
    for node in nodes:
        if not isinstance(node, ast.Attribute) or id(node) in inner:
            continue
        chain, base = [node.attr], node.value
        while isinstance(base, ast.Attribute):
            chain.insert(0, base.attr)
            base = base.value
        rooted = (isinstance(base, ast.Name) and base.id == "p") or (
            isinstance(base, ast.Call) and getattr(base.func, "id", "") == "_params"
        )
        if rooted:
            chain[0] = PARAM_ALIASES.get(chain[0], chain[0])
            keys.add(".".join(chain[:2]))
    return keys


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_code_file_the_stage_reads_is_a_dep(stage):
    deps = STAGES[stage]["deps"]
    missing = sorted(str(f.relative_to(ROOT)) for f in files_read(stage) if not _covered(f, deps))
    assert not missing, f"dvc.yaml stage {stage!r} lacks deps: {missing}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_param_the_stage_reads_is_listed(stage):
    listed = STAGES[stage]["params"]
    missing = sorted(k for k in params_read(stage) if not any(k == p or k.startswith(p + ".")
                                                              for p in listed))  # fmt: skip
    assert not missing, f"dvc.yaml stage {stage!r} lacks params: {missing}"
    assert SUBCOMMAND.get(stage, (None, stage))[1] in listed  # its own whole section


def test_the_checker_sees_lazy_imports_and_cross_section_params():
    """The checks above cannot pass vacuously."""
    reached = {f.relative_to(SRC).as_posix() for f in files_read("transcribe")}
    assert {"callqa/asr/transcribe.py", "callqa/qa/scorecard.py", "callqa/cache.py"} <= reached
    assert "callqa/audio/vad.py" in {f.relative_to(SRC).as_posix() for f in files_read("validate")}
    assert "preprocess.vad" in params_read("validate")
    assert "score.scorecard" in params_read("transcribe")


def test_stages_run_their_own_command_and_outputs_are_declared():
    for name, stage in STAGES.items():
        assert stage["cmd"].startswith(SUBCOMMAND.get(name, (f"callqa {name}",))[0]), name
        assert stage.get("outs") or stage.get("metrics"), name


# ------------------------------------------------------------------ the demo pipeline

sys.path.insert(0, str(ROOT / "demo"))
from sync_dvc import demo_path, render  # noqa: E402

DEMO_STAGES = yaml.safe_load((ROOT / "demo" / "dvc.yaml").read_text())["stages"]


def test_demo_pipeline_is_generated_from_dvc_yaml():
    assert (ROOT / "demo" / "dvc.yaml").read_text() == render(), (
        "demo/dvc.yaml is out of date: run `python demo/sync_dvc.py`"
    )
    assert set(DEMO_STAGES) == set(STAGES) | {"score"}


def test_demo_score_stage_lists_what_score_reads():
    deps = DEMO_STAGES["score"]["deps"]
    missing = sorted(str(f.relative_to(ROOT)) for f in files_read("score") if not _covered(f, deps))
    assert not missing, f"demo/dvc.yaml stage 'score' lacks deps: {missing}"
    listed = DEMO_STAGES["score"]["params"][0]["params.yaml"]
    assert not [k for k in params_read("score") if k.split(".")[0] not in listed]


def test_demo_params_write_where_demo_dvc_yaml_says():
    """Every path of params.yaml that is a dvc.yaml output is moved under demo/ by
    demo/params.yaml exactly as sync_dvc moved it in demo/dvc.yaml (and nothing the default
    pipeline writes is written by the demo)."""
    outs = {
        next(iter(o)) if isinstance(o, dict) else o
        for stage in STAGES.values()
        for key in ("outs", "metrics", "plots")
        for o in stage.get(key, [])
    }
    base, demo = load_params(ROOT / "params.yaml"), load_params(ROOT / "demo" / "params.yaml")
    checked = 0
    for section, cfg in base:
        for field, value in cfg:
            values = value if isinstance(value, list) else [value]
            for k, v in enumerate(values):
                if f"{section}.{field}" in DEMO_READS_DEFAULT:
                    continue
                if isinstance(v, Path) and v.as_posix() in outs:
                    got = getattr(getattr(demo, section), field)
                    got = got[k] if isinstance(value, list) else got
                    assert got.as_posix() == demo_path(v.as_posix()), f"{section}.{field}"
                    checked += 1
    assert checked >= 10


# The demo scores and registers with the default model when `make model` wrote it (read only).
DEMO_READS_DEFAULT = {"score.model", "registry.model_dir"}
