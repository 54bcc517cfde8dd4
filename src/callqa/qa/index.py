"""Batch index: scored calls and errors -> `index.html` (sortable, worst score first) and
`summary.csv` (one row per input, in input order).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from urllib.parse import quote

import numpy as np

from callqa.files import atomic_path
from callqa.qa.figures import fmt_time
from callqa.qa.pages import INDEX_JS, audio_src, esc, page, safe_name
from callqa.schemas import CHECK_IDS, QAError, QAResult

logger = logging.getLogger(__name__)


def write_index(results: list[QAResult | QAError], out_dir: Path) -> tuple[Path, Path]:
    """Write `out_dir/index.html` (sortable table, worst score first) and `out_dir/summary.csv`.

    Args:
        results: scored calls and errors, in input order (the CSV keeps that order).
        out_dir: report folder; calls whose `<call_id>.html` exists there are linked.

    Returns:
        (index.html path, summary.csv path).
    """
    out_dir = Path(out_dir)
    index_path, csv_path = out_dir / "index.html", out_dir / "summary.csv"
    page = render_index(results, out_dir)
    with atomic_path(index_path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    columns, rows = summary_rows(results)
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    n_err = sum(isinstance(r, QAError) for r in results)
    logger.debug("index of %d calls (%d errors) -> %s", len(results) - n_err, n_err, index_path)
    return index_path, csv_path


def render_index(results: list[QAResult | QAError], out_dir: Path) -> str:
    """The HTML text of the batch index (see `write_index`)."""
    out_dir = Path(out_dir)
    ok = sorted((r for r in results if isinstance(r, QAResult)), key=lambda r: (r.score, r.call_id))
    errors = [r for r in results if isinstance(r, QAError)]
    rows = []
    for r in ok:
        failed = [c.id for c in r.checks if c.passed is False]
        name = esc(r.call_id)
        report = out_dir / f"{safe_name(r.call_id)}.html"
        link = f'<a href="{esc(quote(report.name))}">{name}</a>' if report.exists() else name
        crit = '<span class="badge fail">critical</span>' if r.critical_fail else ""
        rows.append(
            f'<tr class="{"crit" if r.critical_fail else ""}">'
            f'<td data-v="{name}"><code>{link}</code></td>'
            f'<td data-v="{esc(r.path)}"><a href="{esc(audio_src(r.path, out_dir))}">'
            f"{esc(Path(r.path).name)}</a></td>"
            f'<td class="num" data-v="{r.score:.1f}">{r.score:.1f}</td>'
            f'<td data-v="{int(r.critical_fail)}">{crit}</td>'
            f'<td class="num" data-v="{r.duration_s:.3f}">{fmt_time(r.duration_s)}</td>'
            f'<td data-v="{len(failed)}">{esc(", ".join(failed))}</td></tr>'
        )
    table = (
        '<table class="grid sortable" id="calls"><thead><tr>'
        '<th data-type="str">Call id</th><th data-type="str">File</th>'
        '<th data-type="num" class="sorted-asc">Score</th><th data-type="num">Critical</th>'
        '<th data-type="num">Duration</th><th data-type="num">Failed checks</th>'
        "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )
    err_html = ""
    if errors:
        err_rows = "".join(
            f"<tr><td><code>{esc(e.path)}</code></td><td><code>{esc(e.error.code)}</code></td>"
            f"<td>{esc(e.error.message)}</td></tr>"
            for e in errors
        )
        err_html = (
            f"<section><h2>Not scored ({len(errors)})</h2><table class=grid><thead><tr>"
            "<th>File</th><th>Error</th><th>Message</th></tr></thead>"
            f"<tbody>{err_rows}</tbody></table></section>"
        )
    n_crit = sum(r.critical_fail for r in ok)
    mean = f"{np.mean([r.score for r in ok]):.1f}" if ok else "&ndash;"
    body = (
        "<header><h1>Call QA batch</h1>"
        f"<p>{len(ok)} calls scored, {len(errors)} not scored, {n_crit} with a critical "
        f'failure; mean score {mean}. <a href="summary.csv">summary.csv</a></p>'
        '<p class="muted">Click a column header to sort (worst score first).</p></header>'
        f"<section>{table}</section>{err_html}"
    )
    return page(INDEX_TITLE, body, INDEX_JS)


def summary_rows(results: list[QAResult | QAError]) -> tuple[list[str], list[dict]]:
    """CSV columns and one row per result (in input order); check columns hold `passed`."""
    check_ids = list(CHECK_IDS)
    for r in results:
        if isinstance(r, QAResult):
            check_ids += [c.id for c in r.checks if c.id not in check_ids]
    columns = ["call_id", "path", "score", "critical_fail", "duration_s", *check_ids, "error"]
    rows = []
    for r in results:
        row: dict = dict.fromkeys(columns, "")
        row.update(call_id=r.call_id or "", path=csv_text(r.path))
        if isinstance(r, QAError):
            row["error"] = csv_text(f"{r.error.code}: {r.error.message}")
        else:
            row.update(score=r.score, critical_fail=r.critical_fail, duration_s=r.duration_s)
            for c in r.checks:
                row[c.id] = "" if c.passed is None else c.passed
        rows.append(row)
    return columns, rows


def csv_text(value: str) -> str:
    """A text cell a spreadsheet will not run as a formula: one starting with = + - @ (or a
    tab / carriage return) gets a leading ' (OWASP, CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


INDEX_TITLE = "Call QA batch"
CSV_HEADER = "call_id,path,score,"


def check_report_dir(out_dir: Path) -> None:
    """Raise ValueError when `out_dir` holds an `index.html` or `summary.csv` callqa did not
    write: the batch index replaces both, and a user's own files must never go with it."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: is a file; the report folder must be a folder")
    ours = {"index.html": f"<title>{INDEX_TITLE}</title>", "summary.csv": CSV_HEADER}
    for name, mark in ours.items():
        f = out_dir / name
        if f.exists() and (not f.is_file() or mark not in _head(f)):
            raise ValueError(
                f"{f}: not written by callqa, and the batch index would replace it; give "
                "another --report-dir (or move that file away)"
            )


def _head(path: Path, n: int = 4096) -> str:
    with open(path, "rb") as f:
        return f.read(n).decode("utf-8", errors="replace")
