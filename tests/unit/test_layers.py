"""Imports point down (ARCHITECTURE.md, Lanes): read every module's imports with `ast`, lazy
imports inside functions included, and check each against the layer table."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "callqa"

# cli/flows -> mlops -> pipeline -> model, asr, qa (and the data stages) -> audio, text -> the
# foundation. A package may import its own modules and anything in a lower layer, nothing else.
LAYERS = {
    "schemas": 0,
    "config": 0,
    "cache": 0,
    "files": 0,
    "tracking": 0,
    "progress": 0,
    "audio": 1,
    "text": 1,
    "asr": 2,
    "qa": 2,
    "model": 2,
    "data": 2,
    "pipeline": 3,
    "mlops": 4,
    "review": 4,
    "cli": 5,
    "cli_common": 5,
    "cli_model": 5,
    "cli_mlops": 5,
    "cli_flows": 5,
    "cli_review": 5,
}
# Sideways imports inside layer 2 that are allowed (everything else in a layer is forbidden):
# featurize reads the phrase banks, their splits and corpus file names (data), and the audio
# features read the bundled Whisper checkpoint (asr.convert). qa and model never meet. In layer
# 4 the promotion gate (mlops) measures agreement with reviewers (review.calibrate); review
# never imports mlops.
SIDEWAYS = {("model", "data"), ("model", "asr"), ("mlops", "review")}


def _package(path: Path) -> str:
    """Top-level part of callqa a source file belongs to: `asr`, `cli`, ..."""
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _callqa_imports(path: Path) -> set[str]:
    """Top-level callqa parts a module imports (`from callqa.qa.x import y` -> `qa`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "callqa" and len(parts) > 1:
                found.add(parts[1])
    return found


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC)


def test_every_package_has_a_layer():
    unknown = {_package(p) for p in _sources()} - set(LAYERS)
    assert not unknown, f"add {sorted(unknown)} to LAYERS in {Path(__file__).name}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path: Path):
    own = _package(path)
    wrong = sorted(
        target
        for target in _callqa_imports(path)
        if target != own
        and target in LAYERS
        and LAYERS[target] >= LAYERS[own]
        and not (LAYERS[own] == 0 and LAYERS[target] == 0)  # the foundation is one layer
        and (own, target) not in SIDEWAYS
        and not (own.startswith("cli") and target.startswith("cli"))  # the CLI is one layer
    )
    assert not wrong, f"{path.relative_to(SRC)} imports {wrong}, which are not below {own!r}"


def test_asr_imports_nothing_from_qa_or_model():
    for path in (SRC / "asr").glob("*.py"):
        assert not _callqa_imports(path) & {"qa", "model"}, path.name


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_graph() -> dict[str, set[str]]:
    """callqa module -> the callqa modules it imports (lazy imports included)."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from callqa.asr import backend` imports a module, `... import load` a name.
                targets |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
        graph[name] = {t for t in targets if t in modules and t != name and "." in t}
        graph[name] -= {m for m in graph[name] if name.startswith(m + ".")}  # own package
    return graph


def test_no_import_cycles():
    graph = _module_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [module, target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_the_checker_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from callqa.qa import scorecard\n    import callqa.text.x\n")
    assert _callqa_imports(module) == {"qa", "text"}
