"""One role's audio -> a waveform-over-spectrogram figure (base64 PNG) for the HTML report.

Figures are drawn with matplotlib's object API (no pyplot state), so reports can be rendered in
worker threads.
"""

from __future__ import annotations

import base64
import io

import numpy as np

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


def role_color(role: str) -> str:
    return ROLE_COLORS.get(role, "#333333")


def role_figure_png(
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
    color = role_color(role)
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
    ax_s.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_time(v, decimals=0)))

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


def fmt_time(t: float, decimals: int = 1) -> str:
    """Seconds as m:ss.s (h:mm:ss.s past an hour)."""
    t = max(0.0, float(t))
    h, rem = divmod(t, 3600)
    m, s = divmod(rem, 60)
    width = 2 + (decimals + 1 if decimals else 0)
    sec = f"{s:0{width}.{decimals}f}"
    if sec.startswith("60"):  # rounding up to the next minute
        m, sec = m + 1, f"{0:0{width}.{decimals}f}"
    return f"{int(h)}:{int(m):02d}:{sec}" if h else f"{int(m)}:{sec}"
