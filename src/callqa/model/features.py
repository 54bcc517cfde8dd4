"""Model inputs of utterances: tokens, Whisper encoder embedding, log-mel image, prosody.

One `FeatureExtractor` serves featurize (training data), the Scorer (calls being scored) and
evaluate (labelled clips), so the model sees the same features everywhere:
- tokens: the text encoder's tokenizer, padded to `max_tokens`;
- audio: mean and std of the Whisper encoder's middle and last layers over the utterance's
  frames, the call's utterances packed into shared 30 s windows (`audio_features.embed_spans`);
- mel: the utterance's slice of the preprocessed log-mel of the conditioned audio, resized to a
  fixed image;
- prosody: pitch, energy, rate and pauses (`audio_features.prosody`);
- level (`level_lufs`): each utterance's audio is brought to one loudness before the encoder
  and prosody, so a recording's gain says nothing about its speaker's emotion;
- speaker context (`speaker_relative`): audio and prosody each followed by their deviation from
  the mean of the same speaker's utterances (a call's role, a corpus speaker), so the model hears
  how this turn differs from the speaker's usual voice as well as the voice itself.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from callqa.audio.prepare import MAX_GAIN_DB, Prepared

logger = logging.getLogger(__name__)

FRAMES_PER_S = 100  # preprocess log-mel hop: 160 samples at 16 kHz


@dataclass(frozen=True)
class FeatureSpec:
    """What shapes the features; saved in the model's config so scoring rebuilds them alike."""

    text_encoder: str = "bundled"
    max_tokens: int = 48
    audio_encoder: str = "bundled"
    mel_shape: tuple[int, int] = (64, 128)
    # A call's utterances of one role are cut out and packed end to end (0.3 s apart) before
    # the encoder, so its 30 s windows hold speech, not the other party's turns as silence.
    pack_speech: bool = True
    # The encoder reads at most this much of each utterance (its start); None = all of it.
    # Scoring cost grows with the audio the encoder reads (the model's share of `callqa score`
    # time: benchmarks/bench_throughput.py); emotion shows within a few seconds.
    audio_max_s: float | None = 4.0
    # Each utterance (or clip) gets an encoder window of its own, cut to its length, instead of
    # sharing one with its neighbours: embeddings then do not depend on what sat beside them.
    embed_alone: bool = True
    # Audio and prosody gain their deviation from the speaker's mean (`speaker_relative`):
    # speaker-independent emotion on RAVDESS rose from UA 0.66 to 0.77 (docs/benchmarks.md).
    speaker_relative: bool = True
    # Each utterance (or clip) is brought to this loudness before the encoder and prosody, so
    # the recording's gain is no cue: at its own level a LibriSpeech reading was "angry" at
    # 0.99, 10 dB quieter "sad" (docs/benchmarks.md). None = as recorded.
    level_lufs: float | None = -23.0
    # A whole clip is cut to its speech (first to last voice-detector interval), as a call's
    # utterance is cut to its ASR segment: trained on whole clips (silence around the speech)
    # and scored on segments, RAVDESS neutral and calm clips came out "angry" (UA 0.73 whole,
    # 0.42 as `callqa score` cuts them, docs/benchmarks.md). False = the whole file.
    clip_speech: bool = True

    def as_dict(self) -> dict:
        d = asdict(self)
        d["mel_shape"] = list(self.mel_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        # a spec saved before `pack_speech` existed embedded spans in place
        d = {"pack_speech": False, "audio_max_s": None, "embed_alone": False,
             "speaker_relative": False, "level_lufs": None, "clip_speech": False,
             **d}  # fmt: skip
        return cls(**{**d, "mel_shape": tuple(d.get("mel_shape", (64, 128)))})


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def mel_slice(logmel: np.ndarray, start: float, end: float, shape: tuple[int, int]) -> np.ndarray:
    """(mels, frames) log-mel between start and end (s), resized to `shape`, standardised."""
    import torch

    f0, f1 = int(start * FRAMES_PER_S), max(int(start * FRAMES_PER_S) + 1, int(end * FRAMES_PER_S))
    part = logmel[:, f0:f1]
    if part.size == 0 or part.shape[1] < 2:
        return np.zeros(shape, np.float32)
    t = torch.from_numpy(np.ascontiguousarray(part, dtype=np.float32))[None, None]
    img = torch.nn.functional.interpolate(t, size=shape, mode="bilinear", align_corners=False)[0, 0]
    img = (img - img.mean()) / img.std().clamp_min(1e-3)
    return img.numpy().astype(np.float32)


def speaker_relative(arrays: dict[str, np.ndarray], groups) -> dict[str, np.ndarray]:
    """`arrays` with audio and prosody each followed by its deviation from its group's mean.

    A group is one speaker: a call's role, or a corpus speaker. A row whose group is None, or
    who is alone in its group, deviates by zeros (the speaker's mean is the row itself). Emotion
    shows as much in how a turn departs from the speaker's usual voice as in the voice: the raw
    features carry a customer who is angry all call long, the deviations carry the turn that
    changes. Rows with no audio (zeros) should be given a group of None.
    """
    groups = [f"\0row{i}" if g is None else str(g) for i, g in enumerate(groups)]
    keys, inv = np.unique(np.asarray(groups, dtype=object), return_inverse=True)
    counts = np.bincount(inv, minlength=len(keys))[:, None]
    out = dict(arrays)
    for name in ("audio", "prosody"):
        x = np.asarray(arrays[name], dtype=np.float64)
        sums = np.zeros((len(keys), x.shape[1]))
        np.add.at(sums, inv, x)
        rel = x - (sums / counts)[inv]
        out[name] = np.concatenate([x, rel], axis=1).astype(np.float32)
    return out


def track_index(prep: Prepared, role: str) -> tuple[str, int]:
    """The track holding `role`'s audio (its own on stereo, the one mono track otherwise)."""
    names = list(prep.tracks)
    name = role if role in prep.tracks else names[0]
    return name, names.index(name)


class FeatureExtractor:
    """Loads the tokenizer and the Whisper encoder once (lazily); computes features."""

    def __init__(self, spec: FeatureSpec, device: str = "auto"):
        self.spec = spec
        self.device = resolve_device(device)

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        from callqa.text.encoder import resolve_model_path

        return AutoTokenizer.from_pretrained(resolve_model_path(self.spec.text_encoder))

    @cached_property
    def encoder(self):
        from callqa.model.audio_features import load_whisper_encoder

        return load_whisper_encoder(self.spec.audio_encoder, device=self.device)

    def tokens(self, texts: list[str]) -> dict[str, np.ndarray]:
        """input_ids and attention_mask, (n, max_tokens) int32."""
        enc = self.tokenizer(
            [t or "" for t in texts],
            padding="max_length",
            truncation=True,
            max_length=self.spec.max_tokens,
            return_tensors="np",
        )
        return {
            "input_ids": enc["input_ids"].astype(np.int32),
            "attention_mask": enc["attention_mask"].astype(np.int8),
        }

    def call_features(
        self, prep: Prepared, spans: list[tuple[str, float, float, int]]
    ) -> dict[str, np.ndarray]:
        """audio, mel and prosody of (role, start, end, n_words) spans of one prepared call."""
        from callqa.model.audio_features import embed_spans, pack_clips, prosody

        n = len(spans)
        audio = None
        by_track: dict[str, list[int]] = {}
        for i, (role, *_rest) in enumerate(spans):
            by_track.setdefault(track_index(prep, role)[0], []).append(i)
        sr = prep.track_sample_rate_hz
        gains = self._span_gains(prep, spans)
        for name, idx in by_track.items():
            track, where = prep.tracks[name], [self._capped(*spans[i][1:3]) for i in idx]
            pieces = [
                track[int(s * sr) : int(e * sr)] * gains[i]
                for (s, e), i in zip(where, idx, strict=True)
            ]
            if self.spec.pack_speech:
                track, where = pack_clips(pieces)
            else:  # spans in place, each at its own level
                track = track.copy()
                for (s, _e), piece in zip(where, pieces, strict=True):
                    track[int(s * sr) : int(s * sr) + piece.size] = piece
            emb = embed_spans(self.encoder, track, where, alone=self.spec.embed_alone)
            if audio is None:
                audio = np.zeros((n, emb.shape[1]), np.float32)
            audio[idx] = emb
        mel = np.zeros((n, *self.spec.mel_shape), np.float32)
        pros = []
        for i, (role, start, end, n_words) in enumerate(spans):
            name, k = track_index(prep, role)
            if prep.logmel is not None:
                mel[i] = mel_slice(prep.logmel[k], start, end, self.spec.mel_shape)
            x = prep.tracks[name][int(start * sr) : int(end * sr)]
            pros.append(prosody(x * gains[i], n_words))
        if audio is None:
            audio = np.zeros((0, 0), np.float32)
        return {
            "audio": audio.astype(np.float32),
            "mel": mel,
            "prosody": np.asarray(pros, np.float32).reshape(n, -1),
        }

    def with_context(self, arrays: dict[str, np.ndarray], groups) -> dict[str, np.ndarray]:
        """`speaker_relative(arrays, groups)` when the spec asks for it, else `arrays`."""
        return speaker_relative(arrays, groups) if self.spec.speaker_relative else arrays

    def _gain(self, x: np.ndarray, sample_rate_hz: int) -> float | None:
        """Linear gain that brings `x` to `spec.level_lufs` (+40 dB at most); None when its
        loudness is undefined (under 0.4 s, or silence); 1 when the spec keeps levels."""
        from callqa.audio.signal_stats import loudness_lufs

        if self.spec.level_lufs is None:
            return 1.0
        level = loudness_lufs(x, sample_rate_hz)
        if level is None:
            return None
        return float(10 ** (min(self.spec.level_lufs - level, MAX_GAIN_DB) / 20))

    def _span_gains(self, prep: Prepared, spans) -> list[float]:
        """Each span's gain to `level_lufs`; a span too short to measure takes its track's (the
        whole track is measured only then)."""
        sr = prep.track_sample_rate_hz
        out, track_gain = [], {}
        for role, start, end, _n in spans:
            name = track_index(prep, role)[0]
            gain = self._gain(prep.tracks[name][int(start * sr) : int(end * sr)], sr)
            if gain is None:
                if name not in track_gain:
                    track_gain[name] = self._gain(prep.tracks[name], sr) or 1.0
                gain = track_gain[name]
            out.append(gain)
        return out

    def _capped(self, start: float, end: float) -> tuple[float, float]:
        cap = self.spec.audio_max_s
        return (start, end) if cap is None else (start, min(end, start + cap))

    def _clip_bounds(self, prep: Prepared) -> tuple[float, float]:
        """(start, end) s of the clip the features read: its speech with `spec.clip_speech`
        (from the first voice-detector interval to the last), else (or with no speech found)
        the whole clip."""
        whole = (0.0, prep.duration_s)
        speech = prep.speech.get(next(iter(prep.tracks)), []) if self.spec.clip_speech else []
        if not speech:
            return whole
        return max(0.0, speech[0][0]), min(prep.duration_s, speech[-1][1])

    def clip_features(self, preps: list[Prepared]) -> dict[str, np.ndarray]:
        """Features of single-speaker clips, each cut to its speech (`spec.clip_speech`) or
        whole, embedded alone or packed (`spec.embed_alone`)."""
        from callqa.model.audio_features import embed_spans, pack_clips, prosody

        sr = preps[0].track_sample_rate_hz if preps else 16000
        bounds = [self._clip_bounds(p) for p in preps]
        clips = [next(iter(p.tracks.values()))[int(s * sr) : int(e * sr)]
                 for p, (s, e) in zip(preps, bounds, strict=True)]  # fmt: skip
        clips = [c * (self._gain(c, sr) or 1.0) for c in clips]
        heard = [c[: int(self._capped(0.0, c.size / sr)[1] * sr)] for c in clips]
        track, spans = pack_clips(heard)
        audio = embed_spans(self.encoder, track, spans, alone=self.spec.embed_alone)
        mel = np.stack(
            [
                mel_slice(p.logmel[0], s, e, self.spec.mel_shape)
                if p.logmel is not None
                else np.zeros(self.spec.mel_shape, np.float32)
                for p, (s, e) in zip(preps, bounds, strict=True)
            ]
        )
        pros = np.stack([prosody(c, None) for c in clips]).astype(np.float32)
        return {"audio": audio.astype(np.float32), "mel": mel, "prosody": pros}
