"""The calibration figures (`calibrate.calibrate`'s dict) -> one self-contained HTML page.

No scripts, no fonts or styles from the network; the per-check threshold figures are PNGs
inlined as base64 (matplotlib's object API, no pyplot state).
"""

from __future__ import annotations

import base64
import io
from html import escape

FIGURES = (("agreement", "agreement"), ("precision", "precision"), ("recall", "recall"),
           ("f1", "F1"))  # fmt: skip
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:right}th:first-child,td:first-child{text-align:left}
tr.random td{background:#eef7ee;font-weight:600}.ci{color:#777;font-size:12px;font-weight:400}
.note{color:#555;max-width:900px}.warn{color:#a05a00}img{max-width:520px;display:block}
"""


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def _cell(fig: dict | None) -> str:
    if not fig or fig.get("value") is None:
        return "<td>–</td>"
    ci = f"[{_fmt(fig.get('lo'))}, {_fmt(fig.get('hi'))}]"
    counts = f" {fig['k']}/{fig['n']}" if "k" in fig else ""
    return f"<td>{fig['value']:.2f} <span class=ci>{ci}{counts}</span></td>"


def share_table(shares: dict, labels: dict) -> str:
    """One row per share (random first, marked unbiased): n, agreement, precision, recall, F1."""
    head = "".join(f"<th>{name}</th>" for _, name in FIGURES)
    rows = []
    for share in ("random", "rest", "all"):
        st = shares.get(share, {"n": 0})
        cells = "".join(_cell(st.get(key)) for key, _ in FIGURES)
        rows.append(f"<tr class={share}><td>{escape(labels[share])}</td><td>{st['n']}</td>"
                    f"{cells}</tr>")  # fmt: skip
    return f"<table><tr><th>share</th><th>n</th>{head}</tr>{''.join(rows)}</table>"


def threshold_figure(t: dict) -> str:
    """F1 against threshold on half A (where it was chosen) and half B, as an inline PNG."""
    from matplotlib.figure import Figure

    curve = t["curve"]
    fig = Figure(figsize=(5.2, 2.6), dpi=100)
    ax = fig.add_subplot()
    ax.plot(curve["threshold"], curve["f1_a"], ".-", label="half A (chosen on)")
    f1_b = [float("nan") if v is None else v for v in curve["f1_b"]]
    ax.plot(curve["threshold"], f1_b, ".-", label="half B (reported)")
    ax.axvline(t["current"], color="grey", ls="--", label=f"current {t['current']:.2f}")
    ax.axvline(t["proposed"], color="green", ls=":", label=f"proposed {t['proposed']:.2f}")
    ax.set(xlabel="threshold", ylabel="F1 (violation)", ylim=(0, 1.05))
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    png = base64.b64encode(buf.getvalue()).decode()
    return f"<img alt='F1 by threshold' src='data:image/png;base64,{png}'>"


def threshold_section(t: dict) -> str:
    if t.get("proposed") is None:
        return f"<p class=warn>Threshold: {escape(t['status'])}.</p>"
    direction = "passes" if t["passes_on_hit"] else "fails"
    return (
        f"<p>Threshold (the check {direction} when the model reaches it): current "
        f"<b>{t['current']:.2f}</b>, proposed <b>{t['proposed']:.2f}</b> (best F1 "
        f"{t['f1_a_proposed']:.2f} on half A, {t['n_a']} verdicts). On half B ({t['n_b']} "
        f"verdicts, not used to choose): F1 {_fmt(t['f1_b_current'])} at the current threshold, "
        f"<b>{_fmt(t['f1_b_proposed'])}</b> at the proposed one: "
        f"<b>{escape(t['recommendation'])}</b>.</p>" + threshold_figure(t)
    )


def render(report: dict) -> str:
    """The whole page."""
    labels = report["share_labels"]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>callqa calibration</title><style>{STYLE}</style></head><body>",
        "<h1>Calibration: the system against people</h1>",
        f"<p class=note>{report['n_labelled']} labelled verdicts on {report['n_calls']} calls "
        f"({report['n_na']} answered N/A, left out); model versions: "
        f"{escape(', '.join(report['model_versions']) or 'none')}.</p>",
        "<p class=note>Truth is the reviewer's latest answer. Positive class = violation (a "
        "failed check): precision = of the checks the system failed, the share people agree "
        "failed; recall = of the checks people say failed, the share the system failed. "
        "<b>The green row (random share) is the unbiased estimate</b>: those calls stay in "
        "the queue whatever their priority. The teach-first rest is picked because it looked "
        "hard, so its figures are biased toward errors, and so is 'all'. Brackets: 95% Wilson "
        "interval and k/n for proportions, 95% bootstrap interval for F1.</p>",
        "<h2>All checks</h2>",
        share_table(report["overall"], labels),
    ]
    for cid, entry in report["checks"].items():
        methods = escape(", ".join(entry["methods"]))
        parts.append(f"<h2 id='{escape(cid)}'>{escape(cid)} <span class=ci>({methods})</span></h2>")
        parts.append(share_table(entry["shares"], labels))
        if entry.get("threshold"):
            parts.append(threshold_section(entry["threshold"]))
    if not report["checks"]:
        parts.append("<p class=warn>No labelled reviews yet.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
