"""QAResult + per-role audio -> one self-contained HTML report per call (`index.py`: the batch).

Reports work offline: figures are PNGs inlined as base64 data URIs (`figures.py`), the only
script is a few inline lines that seek the `<audio>` player (linked to the original file by a
relative path).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from callqa.audio.metrics import metric_unit
from callqa.files import atomic_path
from callqa.qa.figures import AXES_LEFT, AXES_RIGHT, fmt_time, role_color, role_figure_png
from callqa.qa.pages import REPORT_JS, audio_src, esc, page, safe_name
from callqa.schemas import CallEmotion, CheckResult, Evidence, QAResult, Segment

logger = logging.getLogger(__name__)

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
ACRONYMS = {"snr": "SNR", "lufs": "LUFS", "wpm": "WPM", "f0": "F0", "asr": "ASR", "vad": "VAD"}


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
        >>> write_report(result, {"agent": a, "customer": c}, SAMPLE_RATE_HZ, Path("reports/calls"))
        PosixPath('reports/calls/3f2a....html')
    """
    out_dir = Path(out_dir)
    out_path = out_dir / f"{safe_name(result.call_id)}.html"
    page = render_report(result, tracks, sample_rate_hz, out_dir)
    with atomic_path(out_path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    logger.debug("report %s (%d kB)", out_path, len(page) // 1024)
    return out_path


def render_report(
    result: QAResult, tracks: dict[str, np.ndarray], sample_rate_hz: int, out_dir: Path
) -> str:
    """The HTML text of one call's report (see `write_report`)."""
    duration_s = max(
        [float(result.duration_s)]
        + [len(x) / sample_rate_hz for x in tracks.values() if sample_rate_hz > 0]
    )
    silences, overtalks = call_intervals(result)
    failed = [c for c in result.checks if c.passed is False]

    figures = [
        figure_html(role, "data:image/png;base64," + png, duration_s)
        for role, png in role_figures(result, tracks, sample_rate_hz, duration_s).items()
    ]
    if not figures:
        figures.append('<p class="muted">No audio tracks were given for this call.</p>')

    body = "\n".join(
        [
            header_html(result, duration_s),
            player_html(audio_src(result.path, out_dir), Path(result.path).name),
            audio_section_html(figures),
            _checks_html(result.checks),
            transcript_html(result.segments, failed),
            _metrics_html(result.metrics, silences, overtalks),
        ]
    )
    title = f"Call QA {result.call_id}"
    return page(title, body, REPORT_JS)


def call_intervals(result: QAResult) -> tuple[list[dict], list[dict]]:
    """The call's mutual silences and overtalks as dicts with start, end, duration_s."""
    call = result.metrics.get("call", {})
    return _intervals(call.get("mutual_silence")), _intervals(call.get("overtalk"))


def role_figures(
    result: QAResult, tracks: dict[str, np.ndarray], sample_rate_hz: int, duration_s: float
) -> dict[str, str]:
    """role -> base64 PNG of its waveform over spectrogram, with silences, overtalk and the
    evidence of failed checks marked (the report's figures; the review app caches them)."""
    silences, overtalks = call_intervals(result)
    failed = [c for c in result.checks if c.passed is False]
    out = {}
    for role in _ordered_roles(tracks):
        x = np.asarray(tracks[role], dtype=np.float32).reshape(-1)
        flagged = [
            (ev.start, ev.end)
            for c in failed
            for ev in c.evidence
            if ev.role in (role, "call") or ev.role not in tracks
        ]
        out[role] = role_figure_png(
            x, sample_rate_hz, duration_s, role, silences, overtalks, flagged
        )
    return out


def figure_html(role: str, src: str, duration_s: float) -> str:
    """One role's figure, clickable to seek (`src`: a data URI or a URL of the PNG)."""
    return (
        f'<figure class="fig"><figcaption style="color:{role_color(role)}">'
        f"{esc(role)} &middot; waveform and spectrogram</figcaption>"
        f'<div class="figwrap" data-dur="{duration_s:.3f}" data-l="{AXES_LEFT}" '
        f'data-r="{AXES_RIGHT}">'
        f'<img alt="{esc(role)} waveform and spectrogram" src="{esc(src)}">'
        '<div class="playhead"></div></div></figure>'
    )


def audio_section_html(figures: list[str]) -> str:
    return (
        '<section><h2>Audio</h2><p class="muted">Click a figure to seek. Shaded: mutual '
        "silence and overtalk; red bars mark evidence of failed checks.</p>"
        + "\n".join(figures)
        + "</section>"
    )


def header_html(result: QAResult, duration_s: float) -> str:
    """The report's title, score box and call facts."""
    n_failed = sum(c.passed is False for c in result.checks)
    crit = (
        '<span class="badge fail">CRITICAL FAIL</span>'
        if result.critical_fail
        else '<span class="badge pass">no critical failure</span>'
    )
    rows = [
        ("Call id", f"<code>{esc(result.call_id)}</code>"),
        ("File", f"<code>{esc(result.path)}</code>"),
        ("Duration", f"{fmt_time(duration_s)} ({duration_s:.1f} s)"),
        (
            "Channels",
            f"{result.channels} &middot; {result.sample_rate_hz} Hz &middot; roles from "
            f"{esc(result.roles_from)}",
        ),
        ("ASR", f"{esc(result.asr.backend)} / {esc(result.asr.model)}"),
        (
            "Scorecard",
            f"<code>{esc(result.scorecard.path)}</code> &middot; sha256 "
            f'<code title="{esc(result.scorecard.sha256)}">{esc(result.scorecard.sha256[:12])}'
            "</code>",
        ),
    ]
    if result.model is not None:
        where = result.model.path or result.model.uri
        rows.append(
            (
                "Model",
                f"<code>{esc(where)}</code> &middot; sha256 "
                f'<code title="{esc(result.model.sha256)}">{esc(result.model.sha256[:12])}</code>',
            )
        )
    if result.emotion is not None:
        rows.append(("Emotion", _emotion_html(result.emotion)))
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    score_cls = "fail" if result.critical_fail else ("warn" if n_failed else "pass")
    return (
        f"<header><h1>Call QA report <code>{esc(result.call_id)}</code></h1>"
        f'<div class="headgrid"><div class="scorebox {score_cls}">'
        f'<div class="score">{result.score:.1f}<span>/100</span></div>{crit}'
        f'<div class="muted">{n_failed} of {len(result.checks)} checks failed</div></div>'
        f'<table class="kv">{table}</table></div></header>'
    )


def _emotion_html(emotion: CallEmotion) -> str:
    """Each role's emotion label with the model's probability for it."""
    parts = []
    for role, e in (("agent", emotion.agent), ("customer", emotion.customer)):
        if e.label is None:
            what = '<span class="muted">no speech</span>'
        else:
            p = e.scores.get(e.label)
            what = esc(e.label) + (f" ({p:.2f})" if p is not None else "")
        parts.append(f'<span class="role" style="color:{role_color(role)}">{role}</span> {what}')
    return " &middot; ".join(parts)


def player_html(src: str, label: str) -> str:
    """The sticky `<audio id="player">` every seek link and figure drives."""
    return (
        '<div class="player"><audio id="player" controls preload="metadata" '
        f'src="{esc(src)}"></audio>'
        f'<span class="muted" id="now">{esc(label)}</span></div>'
    )


def _checks_html(checks: list[CheckResult]) -> str:
    rows = []
    for c in checks:
        state, label = {True: ("pass", "passed"), False: ("fail", "failed")}.get(
            c.passed, ("na", "not evaluated")
        )
        evidence = "".join(f"<li>{evidence_link(ev)}</li>" for ev in c.evidence)
        rows.append(
            f'<tr class="check {state}" id="check-{esc(c.id)}"><td><code>{esc(c.id)}</code></td>'
            f'<td><span class="badge {state}">{label}</span></td>'
            f'<td class="num">{c.score:.2f}</td><td>{esc(c.detail)}</td>'
            f"<td>{'<ul class=ev>' + evidence + '</ul>' if evidence else ''}</td></tr>"
        )
    return (
        "<section><h2>Scorecard</h2><table class=grid><thead><tr><th>Check</th><th>Result</th>"
        "<th>Score</th><th>Detail</th><th>Evidence</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )


def evidence_link(ev: Evidence) -> str:
    """A seek link to one evidence item, with its role, text and model probability."""
    text = f" &ldquo;{esc(ev.text)}&rdquo;" if ev.text else ""
    if ev.probability is not None:
        text += f' <span class="muted">p={ev.probability:.2f}</span>'
    return (
        f'<a href="#" class="seek" data-t="{ev.start:.3f}">'
        f"{fmt_time(ev.start)}&ndash;{fmt_time(ev.end)}</a> "
        f'<span class="role" style="color:{role_color(ev.role)}">{esc(ev.role)}</span>{text}'
    )


def transcript_html(
    segments: list[Segment], failed: list[CheckResult], corrected: dict[int, str] | None = None
) -> str:
    """Transcript lines by role, seekable, words inside failed-check evidence highlighted.

    Each line carries `data-i`, its index in `segments`; `corrected` (index -> text) shows a
    reviewer's correction in place of the ASR text.
    """
    corrected = corrected or {}
    lines = []
    for i, seg in sorted(enumerate(segments), key=lambda item: (item[1].start, item[1].end)):
        hits = [
            (c.id, ev)
            for c in failed
            for ev in c.evidence
            if ev.role in (seg.role, "call") and _overlaps(seg.start, seg.end, ev.start, ev.end)
        ]
        flag_ids = list(dict.fromkeys(cid for cid, _ in hits))
        text = _segment_text(seg, [ev for _, ev in hits])
        if i in corrected:
            text = (
                f'<span class="corrected" title="ASR: {esc(seg.text)}">{esc(corrected[i])}</span>'
            )

        badges = "".join(f'<span class="flag">{esc(cid)}</span>' for cid in flag_ids)
        lines.append(
            f'<div class="seg {"flagged" if flag_ids else ""}" role="button" tabindex="0" '
            f'data-i="{i}" data-t="{seg.start:.3f}" data-e="{seg.end:.3f}" '
            f'style="border-left-color:{role_color(seg.role)}">'
            f'<span class="ts">{fmt_time(seg.start)}&ndash;{fmt_time(seg.end)}</span>'
            f'<span class="role" style="color:{role_color(seg.role)}">{esc(seg.role)}</span>'
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
        return esc(seg.text)
    out = []
    for w in seg.words:
        # A word counts when its midpoint is inside the evidence span: word boundaries from
        # ASR jitter by tens of ms, and evidence spans are often exactly one word long.
        mid = (w.start + w.end) / 2
        hit = any(ev.start - 0.05 <= mid <= ev.end + 0.05 for ev in evidence)
        out.append(f"<mark>{esc(w.word)}</mark>" if hit else esc(w.word))
    return " ".join(out)


def _metrics_html(metrics: dict[str, dict], silences: list[dict], overtalks: list[dict]) -> str:
    roles = [r for r in _ordered_roles(metrics) if r != "call"]
    keys = _scalar_keys(metrics.get(r, {}) for r in roles)
    role_rows = "".join(
        f"<tr><th>{esc(_label(k))}</th>"
        + "".join(f'<td class="num">{_fmt_value(metrics[r].get(k))}</td>' for r in roles)
        + "</tr>"
        for k in keys
    )
    role_table = (
        "<table class=grid><thead><tr><th>Metric</th>"
        + "".join(f'<th style="color:{role_color(r)}">{esc(r)}</th>' for r in roles)
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
        + "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in call_rows)
        + "</table>"
    )

    def chips(items: list[dict], kind: str) -> str:
        if not items:
            return ""
        links = " ".join(
            f'<a href="#" class="seek chip {kind}" data-t="{iv["start"]:.3f}">'
            f"{fmt_time(iv['start'])} ({iv['duration_s']:.1f} s"
            + (f", {esc(iv['by'])}" if iv.get("by") else "")
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
    stem, unit = metric_unit(key)
    words = [ACRONYMS.get(w, w) for w in stem.split("_") if w]
    text = " ".join(words)
    return (text[:1].upper() + text[1:]) + (f" ({unit})" if unit else "")


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
    return esc(v)
