"""QAResult + per-role audio -> one self-contained HTML report per call; a batch -> index + CSV.

Reports work offline: figures are PNGs inlined as base64 data URIs, the only script is a few
inline lines that seek the `<audio>` player (linked to the original file by a relative path).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

import numpy as np

from callqa.files import atomic_path
from callqa.schemas import CHECK_IDS, CheckResult, Evidence, QAError, QAResult, Segment

logger = logging.getLogger(__name__)

ROLE_COLORS = {"agent": "#1f6fb4", "customer": "#c2410c", "call": "#555555"}
SILENCE_COLOR = "#e0a800"
OVERTALK_COLORS = {"agent": "#8e44ad", "customer": "#16a085"}
FLAG_COLOR = "#d62728"

# Figure geometry: fixed axes margins so the inline script can map a click / the playhead
# between pixels and seconds without knowing matplotlib's layout.
FIG_WIDTH_PX = 1000
PANEL_HEIGHT_PX = 170
FIG_DPI = 100
AXES_LEFT, AXES_RIGHT = 0.065, 0.985
WAVEFORM_BINS = 2000  # min/max envelope columns; more than the panel has pixels is wasted
SPEC_COLUMNS = 1000
SPEC_N_FFT = 512
SPEC_SUBFRAMES = 4  # frames averaged per column, so long calls are summarised, not aliased
SPEC_FLOOR_DB = 70.0

# Per-role metric keys shown first (whatever else the metrics hold follows alphabetically).
METRIC_ORDER = (
    "talk_s",
    "talk_ratio",
    "speech_rate_wpm",
    "n_words",
    "response_latency_mean_s",
    "response_latency_max_s",
    "longest_overtalk_s",
    "overtalk_s",
    "loudness_lufs",
    "snr_db",
    "clipped_share",
    "pitch_mean_hz",
    "pitch_std_hz",
)
UNIT_SUFFIXES = {
    "_wpm": "wpm",
    "_s": "s",
    "_hz": "Hz",
    "_db": "dB",
    "_lufs": "LUFS",
    "_dbfs": "dBFS",
    "_pct": "%",
}
ACRONYMS = {"snr": "SNR", "lufs": "LUFS", "wpm": "WPM", "f0": "F0", "asr": "ASR", "vad": "VAD"}


# --------------------------------------------------------------------------- public API


def write_report(
    result: QAResult, tracks: dict[str, np.ndarray], sample_rate_hz: int, out_dir: Path
) -> Path:
    """Write `out_dir/<call_id>.html`, a self-contained QA report for one call.

    Args:
        result: the scored call.
        tracks: role -> mono float32 audio of that role (stereo channel or diarized cut).
        sample_rate_hz: sample rate of every track.
        out_dir: report folder (created if missing); the player links the original file
            relative to it, so keep reports and audio where they are or re-render.

    Returns:
        Path of the written HTML file.

    Example:
        >>> write_report(result, {"agent": a, "customer": c}, 16000, Path("reports/calls"))
        PosixPath('reports/calls/3f2a....html')
    """
    out_dir = Path(out_dir)
    out_path = out_dir / f"{_safe_name(result.call_id)}.html"
    page = render_report(result, tracks, sample_rate_hz, out_dir)
    with atomic_path(out_path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    logger.debug("report %s (%d kB)", out_path, len(page) // 1024)
    return out_path


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
    logger.info("index of %d calls (%d errors) -> %s", len(results) - n_err, n_err, index_path)
    return index_path, csv_path


# --------------------------------------------------------------------------- per-call page


def render_report(
    result: QAResult, tracks: dict[str, np.ndarray], sample_rate_hz: int, out_dir: Path
) -> str:
    """The HTML text of one call's report (see `write_report`)."""
    duration_s = max(
        [float(result.duration_s)]
        + [len(x) / sample_rate_hz for x in tracks.values() if sample_rate_hz > 0]
    )
    silences = _intervals(result.metrics.get("call", {}).get("mutual_silence"))
    overtalks = _intervals(result.metrics.get("call", {}).get("overtalk"))
    failed = [c for c in result.checks if c.passed is False]

    figures = []
    for role in _ordered_roles(tracks):
        x = np.asarray(tracks[role], dtype=np.float32).reshape(-1)
        flagged = [
            (ev.start, ev.end)
            for c in failed
            for ev in c.evidence
            if ev.role in (role, "call") or ev.role not in tracks
        ]
        png = _role_figure_png(x, sample_rate_hz, duration_s, role, silences, overtalks, flagged)
        figures.append(
            f'<figure class="fig"><figcaption style="color:{_role_color(role)}">'
            f"{_e(role)} &middot; waveform and spectrogram</figcaption>"
            f'<div class="figwrap" data-dur="{duration_s:.3f}" data-l="{AXES_LEFT}" '
            f'data-r="{AXES_RIGHT}">'
            f'<img alt="{_e(role)} waveform and spectrogram" src="data:image/png;base64,{png}">'
            '<div class="playhead"></div></div></figure>'
        )
    if not figures:
        figures.append('<p class="muted">No audio tracks were given for this call.</p>')

    body = "\n".join(
        [
            _header_html(result, duration_s),
            _player_html(result, out_dir),
            '<section><h2>Audio</h2><p class="muted">Click a figure to seek. Shaded: mutual '
            "silence and overtalk; red bars mark evidence of failed checks.</p>"
            + "\n".join(figures)
            + "</section>",
            _checks_html(result.checks),
            _transcript_html(result.segments, failed),
            _metrics_html(result.metrics, silences, overtalks),
        ]
    )
    title = f"Call QA {result.call_id}"
    return _page(title, body, _REPORT_JS)


def _header_html(result: QAResult, duration_s: float) -> str:
    n_failed = sum(c.passed is False for c in result.checks)
    crit = (
        '<span class="badge fail">CRITICAL FAIL</span>'
        if result.critical_fail
        else '<span class="badge pass">no critical failure</span>'
    )
    rows = [
        ("Call id", f"<code>{_e(result.call_id)}</code>"),
        ("File", f"<code>{_e(result.path)}</code>"),
        ("Duration", f"{_fmt_time(duration_s)} ({duration_s:.1f} s)"),
        (
            "Channels",
            f"{result.channels} &middot; {result.sample_rate_hz} Hz &middot; roles from "
            f"{_e(result.roles_from)}",
        ),
        ("ASR", f"{_e(result.asr.backend)} / {_e(result.asr.model)}"),
        (
            "Scorecard",
            f"<code>{_e(result.scorecard.path)}</code> &middot; sha256 "
            f'<code title="{_e(result.scorecard.sha256)}">{_e(result.scorecard.sha256[:12])}'
            "</code>",
        ),
    ]
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    score_cls = "fail" if result.critical_fail else ("warn" if n_failed else "pass")
    return (
        f"<header><h1>Call QA report <code>{_e(result.call_id)}</code></h1>"
        f'<div class="headgrid"><div class="scorebox {score_cls}">'
        f'<div class="score">{result.score:.1f}<span>/100</span></div>{crit}'
        f'<div class="muted">{n_failed} of {len(result.checks)} checks failed</div></div>'
        f'<table class="kv">{table}</table></div></header>'
    )


def _player_html(result: QAResult, out_dir: Path) -> str:
    src = audio_src(result.path, out_dir)
    return (
        '<div class="player"><audio id="player" controls preload="metadata" '
        f'src="{_e(src)}"></audio>'
        f'<span class="muted" id="now">{_e(Path(result.path).name)}</span></div>'
    )


def audio_src(audio_path: str | Path, out_dir: Path) -> str:
    """URL of the original audio as seen from a page in `out_dir`.

    A relative path keeps a report folder and its audio movable together; across drives
    (Windows) no relative path exists, so an absolute file:// URI is used instead.
    """
    target = os.path.abspath(audio_path)
    try:
        rel = os.path.relpath(target, os.path.abspath(out_dir))
    except ValueError:
        return Path(target).as_uri()
    return quote(rel.replace(os.sep, "/"))


def _checks_html(checks: list[CheckResult]) -> str:
    rows = []
    for c in checks:
        state, label = {True: ("pass", "passed"), False: ("fail", "failed")}.get(
            c.passed, ("na", "not evaluated")
        )
        evidence = "".join(f"<li>{_evidence_link(ev)}</li>" for ev in c.evidence)
        rows.append(
            f'<tr class="check {state}" id="check-{_e(c.id)}"><td><code>{_e(c.id)}</code></td>'
            f'<td><span class="badge {state}">{label}</span></td>'
            f'<td class="num">{c.score:.2f}</td><td>{_e(c.detail)}</td>'
            f"<td>{'<ul class=ev>' + evidence + '</ul>' if evidence else ''}</td></tr>"
        )
    return (
        "<section><h2>Scorecard</h2><table class=grid><thead><tr><th>Check</th><th>Result</th>"
        "<th>Score</th><th>Detail</th><th>Evidence</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )


def _evidence_link(ev: Evidence) -> str:
    text = f" &ldquo;{_e(ev.text)}&rdquo;" if ev.text else ""
    return (
        f'<a href="#" class="seek" data-t="{ev.start:.3f}">'
        f"{_fmt_time(ev.start)}&ndash;{_fmt_time(ev.end)}</a> "
        f'<span class="role" style="color:{_role_color(ev.role)}">{_e(ev.role)}</span>{text}'
    )


def _transcript_html(segments: list[Segment], failed: list[CheckResult]) -> str:
    lines = []
    for seg in sorted(segments, key=lambda s: (s.start, s.end)):
        hits = [
            (c.id, ev)
            for c in failed
            for ev in c.evidence
            if ev.role in (seg.role, "call") and _overlaps(seg.start, seg.end, ev.start, ev.end)
        ]
        flag_ids = list(dict.fromkeys(cid for cid, _ in hits))
        text = _segment_text(seg, [ev for _, ev in hits])
        badges = "".join(f'<span class="flag">{_e(cid)}</span>' for cid in flag_ids)
        lines.append(
            f'<div class="seg {"flagged" if flag_ids else ""}" role="button" tabindex="0" '
            f'data-t="{seg.start:.3f}" data-e="{seg.end:.3f}" '
            f'style="border-left-color:{_role_color(seg.role)}">'
            f'<span class="ts">{_fmt_time(seg.start)}&ndash;{_fmt_time(seg.end)}</span>'
            f'<span class="role" style="color:{_role_color(seg.role)}">{_e(seg.role)}</span>'
            f'<span class="text">{text}</span>{badges}</div>'
        )
    if not lines:
        lines.append('<p class="muted">No speech was transcribed.</p>')
    return (
        '<section><h2>Transcript</h2><p class="muted">Click a line to play from there. Lines '
        "overlapping evidence of a failed check are flagged; the words inside the evidence "
        "are highlighted.</p>" + "\n".join(lines) + "</section>"
    )


def _segment_text(seg: Segment, evidence: list[Evidence]) -> str:
    """Escaped segment text, with words inside failed-check evidence wrapped in <mark>."""
    if not evidence or not seg.words:
        return _e(seg.text)
    out = []
    for w in seg.words:
        # A word counts when its midpoint is inside the evidence span: word boundaries from
        # ASR jitter by tens of ms, and evidence spans are often exactly one word long.
        mid = (w.start + w.end) / 2
        hit = any(ev.start - 0.05 <= mid <= ev.end + 0.05 for ev in evidence)
        out.append(f"<mark>{_e(w.word)}</mark>" if hit else _e(w.word))
    return " ".join(out)


def _metrics_html(metrics: dict[str, dict], silences: list[dict], overtalks: list[dict]) -> str:
    roles = [r for r in _ordered_roles(metrics) if r != "call"]
    keys = _scalar_keys(metrics.get(r, {}) for r in roles)
    role_rows = "".join(
        f"<tr><th>{_e(_label(k))}</th>"
        + "".join(f'<td class="num">{_fmt_value(metrics[r].get(k))}</td>' for r in roles)
        + "</tr>"
        for k in keys
    )
    role_table = (
        "<table class=grid><thead><tr><th>Metric</th>"
        + "".join(f'<th style="color:{_role_color(r)}">{_e(r)}</th>' for r in roles)
        + f"</tr></thead><tbody>{role_rows}</tbody></table>"
        if roles
        else ""
    )

    call = metrics.get("call", {})
    call_rows = [
        (
            "Mutual silence",
            f"{sum(iv['duration_s'] for iv in silences):.1f} s in {len(silences)} gaps, "
            f"longest {max((iv['duration_s'] for iv in silences), default=0.0):.1f} s",
        )
    ]
    for by in sorted({ev.get("by") or "" for ev in overtalks}):
        evs = [ev for ev in overtalks if (ev.get("by") or "") == by]
        call_rows.append(
            (
                f"Overtalk by {by or 'unknown'}",
                f"{sum(ev['duration_s'] for ev in evs):.1f} s in {len(evs)} intervals, "
                f"longest {max(ev['duration_s'] for ev in evs):.1f} s",
            )
        )
    if not overtalks:
        call_rows.append(("Overtalk", "none"))
    call_rows += [(_label(k), _fmt_value(call.get(k))) for k in _scalar_keys([call])]
    # Values are built here from numbers or escaped by _fmt_value; labels are escaped.
    call_table = (
        "<table class=kv>"
        + "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in call_rows)
        + "</table>"
    )

    def chips(items: list[dict], kind: str) -> str:
        if not items:
            return ""
        links = " ".join(
            f'<a href="#" class="seek chip {kind}" data-t="{iv["start"]:.3f}">'
            f"{_fmt_time(iv['start'])} ({iv['duration_s']:.1f} s"
            + (f", {_e(iv['by'])}" if iv.get("by") else "")
            + ")</a>"
            for iv in items
        )
        name = "Mutual silence" if kind == "silence" else "Overtalk"
        return f"<p><b>{name}:</b> {links}</p>"

    return (
        "<section><h2>Key metrics</h2><div class=metrics>"
        f"<div>{role_table}</div><div>{call_table}</div></div>"
        f"{chips(silences, 'silence')}{chips(overtalks, 'overtalk')}</section>"
    )


# --------------------------------------------------------------------------- figures


def _role_figure_png(
    x: np.ndarray,
    sample_rate_hz: int,
    duration_s: float,
    role: str,
    silences: list[dict],
    overtalks: list[dict],
    flagged: list[tuple[float, float]],
) -> str:
    """Waveform over spectrogram for one role, as base64 PNG."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    # Figure (not pyplot) renders with Agg and keeps no global state: safe in worker threads.
    fig = Figure(figsize=(FIG_WIDTH_PX / FIG_DPI, 2 * PANEL_HEIGHT_PX / FIG_DPI), dpi=FIG_DPI)
    ax_w, ax_s = fig.subplots(2, 1, sharex=True)
    fig.subplots_adjust(left=AXES_LEFT, right=AXES_RIGHT, top=0.88, bottom=0.12, hspace=0.08)
    color = _role_color(role)
    xmax = max(duration_s, 1e-3)

    t, lo, hi = waveform_envelope(x, sample_rate_hz)
    peak = float(max(np.abs(lo).max(initial=0.0), np.abs(hi).max(initial=0.0), 1e-3))
    if len(t):
        ax_w.fill_between(t, lo, hi, color=color, linewidth=0.4, step="mid", zorder=2)
    ax_w.set_ylim(-peak * 1.1, peak * 1.1)
    ax_w.set_yticks([])
    ax_w.set_ylabel(role, color=color, fontsize=9)

    spec_db, f_max_hz = spectrogram_db(x, sample_rate_hz)
    if spec_db.size:
        ax_s.imshow(
            spec_db,
            origin="lower",
            aspect="auto",
            cmap="magma",
            extent=(0, len(x) / sample_rate_hz, 0, f_max_hz / 1000),
            interpolation="nearest",
        )
    ax_s.set_ylabel("kHz", fontsize=8)
    ax_s.tick_params(labelsize=8)
    ax_s.set_xlim(0, xmax)
    ax_s.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt_time(v, decimals=0)))

    handles = []
    # Full-height shading behind the waveform; on the spectrogram only a strip along the top,
    # where it does not veil the speech energy (translucent colours turn murky on magma).
    spans = [(iv, SILENCE_COLOR) for iv in silences] + [
        (ev, OVERTALK_COLORS.get(ev.get("by"), "#7f7f7f")) for ev in overtalks
    ]
    for iv, c in spans:
        ax_w.axvspan(iv["start"], iv["end"], color=c, alpha=0.35, lw=0, zorder=0)
        ax_s.axvspan(iv["start"], iv["end"], ymin=0.9, ymax=1.0, color=c, alpha=0.9, lw=0)
    for s, e in flagged:
        # Drawn in axes-fraction y so the bar sits on top whatever the amplitude scale.
        ax_w.axvspan(s, max(e, s + xmax / 500), ymin=0.9, ymax=1.0, color=FLAG_COLOR, lw=0)
    if silences:
        handles.append(Patch(color=SILENCE_COLOR, alpha=0.5, label="mutual silence"))
    for by in sorted({ev.get("by") for ev in overtalks}, key=str):
        c = OVERTALK_COLORS.get(by, "#7f7f7f")
        handles.append(Patch(color=c, alpha=0.5, label=f"overtalk by {by or 'unknown'}"))
    if flagged:
        handles.append(Patch(color=FLAG_COLOR, label="failed-check evidence"))
    if handles:
        fig.legend(
            handles=handles,
            loc="upper right",
            ncol=len(handles),
            fontsize=8,
            frameon=False,
            bbox_to_anchor=(AXES_RIGHT, 1.0),
        )

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIG_DPI)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def waveform_envelope(
    x: np.ndarray, sample_rate_hz: int, n_bins: int = WAVEFORM_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min/max envelope of `x` in at most `n_bins` columns: (bin centre times s, min, max)."""
    if x.size == 0 or sample_rate_hz <= 0:
        empty = np.zeros(0, dtype=np.float32)
        return empty, empty, empty
    per_bin = max(1, int(np.ceil(x.size / n_bins)))
    n_full = x.size // per_bin
    cols = x[: n_full * per_bin].reshape(n_full, per_bin)
    lo, hi = cols.min(axis=1), cols.max(axis=1)
    if x.size > n_full * per_bin:  # the ragged tail
        tail = x[n_full * per_bin :]
        lo, hi = np.append(lo, tail.min()), np.append(hi, tail.max())
    t = (np.arange(len(lo)) + 0.5) * per_bin / sample_rate_hz
    return t, lo, hi


def spectrogram_db(
    x: np.ndarray, sample_rate_hz: int, n_columns: int = SPEC_COLUMNS
) -> tuple[np.ndarray, float]:
    """Power spectrogram in dB (freq bins, columns), floored `SPEC_FLOOR_DB` below its peak.

    Each column averages a few Hann frames spread over its span instead of computing every
    frame, so an hour-long call costs the same as a two-minute one.
    """
    n_fft = SPEC_N_FFT
    if x.size < n_fft or sample_rate_hz <= 0:
        return np.zeros((0, 0), dtype=np.float32), sample_rate_hz / 2
    n_cols = int(min(n_columns, max(1, (x.size - n_fft) // (n_fft // 4) + 1)))
    edges = np.linspace(0, x.size - n_fft, n_cols + 1)
    sub = (np.arange(SPEC_SUBFRAMES) + 0.5) / SPEC_SUBFRAMES
    starts = (edges[:-1, None] + np.diff(edges)[:, None] * sub[None, :]).astype(np.int64)
    frames = x[starts.reshape(-1)[:, None] + np.arange(n_fft)[None, :]]
    spec = np.abs(np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=1)) ** 2
    power = spec.reshape(n_cols, SPEC_SUBFRAMES, -1).mean(axis=1).T
    db = 10 * np.log10(power + 1e-12)
    db = np.maximum(db, db.max() - SPEC_FLOOR_DB)
    return db.astype(np.float32), sample_rate_hz / 2


# --------------------------------------------------------------------------- batch index


def render_index(results: list[QAResult | QAError], out_dir: Path) -> str:
    """The HTML text of the batch index (see `write_index`)."""
    out_dir = Path(out_dir)
    ok = sorted((r for r in results if isinstance(r, QAResult)), key=lambda r: (r.score, r.call_id))
    errors = [r for r in results if isinstance(r, QAError)]
    rows = []
    for r in ok:
        failed = [c.id for c in r.checks if c.passed is False]
        name = _e(r.call_id)
        report = out_dir / f"{_safe_name(r.call_id)}.html"
        link = f'<a href="{_e(quote(report.name))}">{name}</a>' if report.exists() else name
        crit = '<span class="badge fail">critical</span>' if r.critical_fail else ""
        rows.append(
            f'<tr class="{"crit" if r.critical_fail else ""}">'
            f'<td data-v="{name}"><code>{link}</code></td>'
            f'<td data-v="{_e(r.path)}"><a href="{_e(audio_src(r.path, out_dir))}">'
            f"{_e(Path(r.path).name)}</a></td>"
            f'<td class="num" data-v="{r.score:.1f}">{r.score:.1f}</td>'
            f'<td data-v="{int(r.critical_fail)}">{crit}</td>'
            f'<td class="num" data-v="{r.duration_s:.3f}">{_fmt_time(r.duration_s)}</td>'
            f'<td data-v="{len(failed)}">{_e(", ".join(failed))}</td></tr>'
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
            f"<tr><td><code>{_e(e.path)}</code></td><td><code>{_e(e.error.code)}</code></td>"
            f"<td>{_e(e.error.message)}</td></tr>"
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
    return _page("Call QA batch", body, _INDEX_JS)


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
        row.update(call_id=r.call_id or "", path=r.path)
        if isinstance(r, QAError):
            row["error"] = f"{r.error.code}: {r.error.message}"
        else:
            row.update(score=r.score, critical_fail=r.critical_fail, duration_s=r.duration_s)
            for c in r.checks:
                row[c.id] = "" if c.passed is None else c.passed
        rows.append(row)
    return columns, rows


# --------------------------------------------------------------------------- helpers


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _safe_name(call_id: str) -> str:
    if not call_id or Path(call_id).name != call_id or call_id in (".", ".."):
        raise ValueError(
            f"call_id {call_id!r} cannot name a report file; it must be a plain name "
            "(the content hash from callqa.files.content_id)"
        )
    return call_id


def _role_color(role: str) -> str:
    return ROLE_COLORS.get(role, "#333333")


def _ordered_roles(mapping: Iterable[str]) -> list[str]:
    known = [r for r in ("agent", "customer") if r in mapping]
    return known + sorted(r for r in mapping if r not in known)


def _intervals(items: object) -> list[dict]:
    """Call-level interval list as dicts with start/end/duration_s (tolerates missing keys)."""
    out = []
    for item in items or []:
        if not isinstance(item, dict) or item.get("start") is None or item.get("end") is None:
            continue
        start, end = float(item["start"]), float(item["end"])
        out.append({**item, "start": start, "end": end, "duration_s": end - start})
    return out


def _overlaps(s1: float, e1: float, s2: float, e2: float) -> bool:
    # Point evidence (start == end) still counts when it falls inside the segment.
    return s2 <= e1 and e2 >= s1 if e2 == s2 else s2 < e1 and e2 > s1


def _scalar_keys(dicts: Iterable[dict]) -> list[str]:
    keys: set[str] = set()
    for d in dicts:
        keys |= {k for k, v in d.items() if v is None or isinstance(v, bool | int | float | str)}
    return [k for k in METRIC_ORDER if k in keys] + sorted(keys - set(METRIC_ORDER))


def _label(key: str) -> str:
    """Metric key -> table label: `snr_db` -> `SNR (dB)`, `talk_ratio` -> `Talk ratio`."""
    unit = ""
    for suffix, name in UNIT_SUFFIXES.items():
        if key.endswith(suffix):
            key, unit = key[: -len(suffix)], f" ({name})"
            break
    words = [ACRONYMS.get(w, w) for w in key.split("_") if w]
    text = " ".join(words)
    return (text[:1].upper() + text[1:]) + unit


def _fmt_value(v: object) -> str:
    if v is None:
        return '<span class="muted">&ndash;</span>'
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not np.isfinite(v):
            return '<span class="muted">&ndash;</span>'
        a = abs(v)
        return f"{v:.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}"
    return _e(v)


def _fmt_time(t: float, decimals: int = 1) -> str:
    """Seconds as m:ss.s (h:mm:ss.s past an hour)."""
    t = max(0.0, float(t))
    h, rem = divmod(t, 3600)
    m, s = divmod(rem, 60)
    width = 2 + (decimals + 1 if decimals else 0)
    sec = f"{s:0{width}.{decimals}f}"
    if sec.startswith("60"):  # rounding up to the next minute
        m, sec = m + 1, f"{0:0{width}.{decimals}f}"
    return f"{int(h)}:{int(m):02d}:{sec}" if h else f"{int(m)}:{sec}"


def _page(title: str, body: str, script: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body>\n{body}\n<script>{script}</script></body></html>\n"
    )


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 margin:0 auto;max-width:1060px;padding:0 16px 40px;color:#1d1d1f;background:#fff}
h1{font-size:22px;margin:18px 0 10px}h2{font-size:17px;margin:26px 0 8px;
 border-bottom:1px solid #ddd;padding-bottom:3px}
code{font-family:ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12.5px}
.muted{color:#6b6b6b;font-size:12.5px}
.headgrid{display:flex;gap:18px;align-items:flex-start}
.scorebox{min-width:170px;padding:10px 14px;border-radius:8px;border:2px solid;text-align:center}
.scorebox.pass{border-color:#2e7d32}.scorebox.warn{border-color:#e0a800}
.scorebox.fail{border-color:#c62828}
.score{font-size:38px;font-weight:700}.score span{font-size:16px;color:#6b6b6b}
table{border-collapse:collapse}.kv th{text-align:left;padding:2px 12px 2px 0;color:#555;
 font-weight:600;vertical-align:top;white-space:nowrap}.kv td{padding:2px 0;word-break:break-all}
.grid{width:100%}.grid th,.grid td{border:1px solid #ddd;padding:4px 7px;vertical-align:top}
.grid th{background:#f4f4f6;text-align:left}.num{text-align:right;white-space:nowrap}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;
 white-space:nowrap}
.badge.pass{background:#e3f2e5;color:#1b5e20}.badge.fail{background:#fde2e2;color:#b71c1c}
.badge.na{background:#ececec;color:#555}
tr.check.fail td{background:#fff6f6}
ul.ev{margin:0;padding-left:16px}ul.ev li{margin:1px 0}
.player{position:sticky;top:0;z-index:5;background:#fff;padding:8px 0;
 border-bottom:1px solid #e5e5e5;display:flex;align-items:center;gap:12px}
.player audio{width:520px;max-width:100%}
.fig{margin:8px 0}.fig figcaption{font-weight:600;font-size:13px}
.figwrap{position:relative;cursor:crosshair}.figwrap img{width:100%;height:auto;display:block}
.playhead{position:absolute;top:0;bottom:0;width:2px;background:#00b050;display:none;
 pointer-events:none}
.seg{display:flex;gap:10px;align-items:baseline;padding:3px 8px;margin:2px 0;cursor:pointer;
 border-left:4px solid;border-radius:3px}
.seg:hover,.seg:focus{background:#f1f5fb;outline:none}
.seg.flagged{background:#fdecea}.seg.flagged:hover{background:#fad4cf}
.seg.playing{box-shadow:inset 0 0 0 2px #00b050}
.ts{font-family:ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12px;
 color:#555;white-space:nowrap}
.role{font-weight:600;font-size:12px;text-transform:uppercase;min-width:68px}
.text{flex:1}
mark{background:#ffcc80;padding:0 2px;border-radius:2px}
.flag{background:#c62828;color:#fff;font-size:11px;padding:1px 6px;border-radius:8px;
 white-space:nowrap}
a.seek{color:#0b57d0;text-decoration:none;font-family:ui-monospace,Menlo,Consolas,monospace;
 font-size:12px}a.seek:hover{text-decoration:underline}
.metrics{display:grid;grid-template-columns:1.3fr 1fr;gap:18px;align-items:start}
.chip{display:inline-block;margin:2px 2px;padding:0 6px;border-radius:8px}
.chip.silence{background:#fbefc6}.chip.overtalk{background:#ead9f2}
table.sortable th{cursor:pointer;user-select:none}
th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}
tr.crit td{background:#fff4f4}
"""

_REPORT_JS = """
(function(){
var a=document.getElementById('player');
function seek(t){if(!a)return;a.currentTime=t;var p=a.play();if(p&&p.catch)p.catch(function(){});}
document.querySelectorAll('[data-t]').forEach(function(el){
 el.addEventListener('click',function(ev){ev.preventDefault();seek(parseFloat(el.dataset.t));});
 el.addEventListener('keydown',function(ev){if(ev.key==='Enter'||ev.key===' '){
  ev.preventDefault();seek(parseFloat(el.dataset.t));}});
});
// data-l / data-r: the axes' left and right edges as fractions of the image width.
function frac(w,t){var L=parseFloat(w.dataset.l),R=parseFloat(w.dataset.r);
 return L+t/parseFloat(w.dataset.dur)*(R-L);}
document.querySelectorAll('.figwrap').forEach(function(w){
 w.addEventListener('click',function(ev){var r=w.getBoundingClientRect();
  var L=parseFloat(w.dataset.l),R=parseFloat(w.dataset.r);
  var f=((ev.clientX-r.left)/r.width-L)/(R-L);
  if(f>=0&&f<=1)seek(f*parseFloat(w.dataset.dur));});
});
var segs=[].slice.call(document.querySelectorAll('.seg'));
if(a)a.addEventListener('timeupdate',function(){var t=a.currentTime;
 document.querySelectorAll('.figwrap').forEach(function(w){var h=w.querySelector('.playhead');
  h.style.display='block';h.style.left=(frac(w,t)*100)+'%';});
 segs.forEach(function(s){
  s.classList.toggle('playing',t>=parseFloat(s.dataset.t)&&t<parseFloat(s.dataset.e));});
});
})();
"""

_INDEX_JS = """
document.querySelectorAll('table.sortable').forEach(function(tb){
 var ths=tb.querySelectorAll('th');
 ths.forEach(function(th,i){th.addEventListener('click',function(){
  var asc=!th.classList.contains('sorted-asc');
  ths.forEach(function(h){h.classList.remove('sorted-asc','sorted-desc');});
  th.classList.add(asc?'sorted-asc':'sorted-desc');
  var num=th.dataset.type==='num',body=tb.tBodies[0];
  var rows=[].slice.call(body.rows);
  rows.sort(function(x,y){var u=x.cells[i].dataset.v,v=y.cells[i].dataset.v;
   var c=num?parseFloat(u)-parseFloat(v):u.localeCompare(v);return asc?c:-c;});
  rows.forEach(function(r){body.appendChild(r);});
 });});
});
"""
