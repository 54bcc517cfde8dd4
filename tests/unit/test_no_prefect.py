"""Prefect is imported only in flows/ (ARCHITECTURE.md): no module under src/ imports it."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def test_prefect_is_imported_nowhere_under_src():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            else:
                continue
            found += [f"{path}:{node.lineno}" for n in names if n.split(".")[0] == "prefect"]
    text_hits = [str(p) for p in SRC.rglob("*.py") if "import prefect" in p.read_text()]
    assert not found and not text_hits, f"prefect imported under src/: {found or text_hits}"
