"""Transcribe stage: preprocessed role tracks -> role-attributed segments with word timestamps.

Stereo calls are transcribed per channel. Mono calls are transcribed once, then split into
speakers by diarization; the agent is the speaker that an agent-likeness scorer passed in by the
caller rates highest (the first speaker when none stands out). ASR output is cached per track in
the `transcribe` stage of `callqa.cache` (`CachedAsr`), so an interrupted run resumes where it
stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from callqa.asr.backend import AsrBackend, AsrSegment
from callqa.asr.diarize import diarize
from callqa.asr.roles import AgentLikeness, pick_agent
from callqa.cache import CacheKey, StageCache, library_versions, weights_id
from callqa.config import ConfigError, TranscribeConfig, load_setting
from callqa.files import atomic_path
from callqa.schemas import SAMPLE_RATE_HZ, Segment, Word

logger = logging.getLogger(__name__)
Interval = tuple[float, float]
# Cache code version: bump when the same audio would be transcribed differently (4: loops cut).
CODE_VERSION = 4
# Decoding options that change the words (batch size too: batched decoding pads and sorts).
_OPTIONS = {"language", "beam_size", "batch_size", "max_no_speech_prob", "min_avg_logprob"}
# Libraries that shape the words besides our code, per backend.
LIBRARIES = {
    "faster-whisper": ("numpy", "faster-whisper", "ctranslate2", "tokenizers"),
    "transformers": ("numpy", "torch", "transformers", "tokenizers"),
}
MAX_PAUSE_S = 1.0  # a longer gap between words starts a new transcript segment


@dataclass
class Transcript:
    """What the later stages need from ASR, with roles resolved."""

    segments: list[Segment]
    speech: dict[str, list[Interval]]  # role -> activity intervals (VAD, or diarized turns)
    tracks: dict[str, np.ndarray]  # role -> 16 kHz audio (mono input: the other speaker muted)
    roles_from: str  # "channels" | "diarization"


class CachedAsr:
    """An ASR backend behind the per-track `transcribe` cache of `callqa.cache`.

    Content = the track's samples and its VAD speech; the rest of the key = decoding options,
    CODE_VERSION, the model's weights hash, device and compute type, and the versions of the
    libraries the backend decodes with. `callqa transcribe` and `callqa score` hold equal keys
    for the same call, so a call is decoded once.
    """

    def __init__(
        self,
        backend: AsrBackend,
        cfg: TranscribeConfig,
        root: Path | None = None,
        libraries: dict | None = None,
    ):
        self.backend = backend
        options = cfg.model_dump(include=_OPTIONS)
        if libraries is None:
            libraries = library_versions(LIBRARIES.get(backend.name, ("numpy",)))
        self.cache = StageCache(
            "transcribe",
            CODE_VERSION,
            params={"backend": backend.name, **options},
            model=weights_id(backend.model_id),
            device=str(getattr(backend, "device", "unknown")),
            # faster-whisper names a compute type; transformers a torch dtype
            compute_type=str(getattr(backend, "compute_type", getattr(backend, "dtype", None))),
            libraries=libraries,
            root=root,
        )
        self.cache.sweep()
        self.hits = 0

    @staticmethod
    def content(x: np.ndarray, speech: list[Interval]) -> str:
        """Content hash of one track: its float32 samples and its speech intervals."""
        h = hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32))  # its buffer: no copy
        h.update(json.dumps([[float(s), float(e)] for s, e in speech]).encode())
        return h.hexdigest()[:32]

    def key(self, x: np.ndarray, speech: list[Interval]) -> CacheKey:
        return self.cache.key(self.content(x, speech))

    def transcribe(self, x: np.ndarray, speech: list[Interval]) -> list[AsrSegment]:
        return self.transcribe_many([(x, speech)])[0]

    def transcribe_many(
        self, tracks: list[tuple[np.ndarray, list[Interval]]]
    ) -> list[list[AsrSegment]]:
        """Cached tracks come from disk; the others are decoded together, then cached."""
        contents = [self.content(x, speech) for x, speech in tracks]
        out: list[list[AsrSegment] | None] = [self._read(c) for c in contents]
        todo = [i for i, got in enumerate(out) if got is None]
        if todo:
            fresh = self.backend.transcribe_many([tracks[i] for i in todo])
            for i, segments in zip(todo, fresh, strict=True):
                self.cache.put_json(contents[i], [_segment_to_dict(s) for s in segments])
                out[i] = segments
        return out  # type: ignore[return-value]

    def _read(self, content: str) -> list[AsrSegment] | None:
        rows = self.cache.get_json(content)
        if rows is None:
            return None
        try:
            segments = [_segment_from_dict(r) for r in rows]
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring an ASR cache entry of another shape (%s)", content)
            return None
        self.hits += 1
        return segments


def _segment_to_dict(s: AsrSegment) -> dict:
    d = asdict(s)
    d["words"] = [w.model_dump() for w in s.words]
    return d


def _segment_from_dict(d: dict) -> AsrSegment:
    return AsrSegment(**{**d, "words": [Word(**w) for w in d["words"]]})


def load_backend(cfg: TranscribeConfig) -> AsrBackend:
    """Load the configured ASR model once.

    Args:
        cfg: the `transcribe` params section (backend, model, device, compute type, ...).

    Returns:
        A backend whose `transcribe` can be called for many tracks.

    Raises:
        ConfigError: the backend or model cannot be loaded (the message names the key).
    """
    if cfg.backend == "faster-whisper":
        from callqa.asr.faster_whisper import FasterWhisperBackend as Backend
    elif cfg.backend == "transformers":
        from callqa.asr.transformers_whisper import TransformersWhisperBackend as Backend
    else:
        raise ConfigError(
            f"transcribe.backend: unknown backend {cfg.backend!r}; use 'faster-whisper' or "
            "'transformers'"
        )
    return load_setting("transcribe.model", cfg.model, lambda _: Backend(cfg))


def transcribe_prepared(
    prep,
    asr: CachedAsr,
    agent_likeness: AgentLikeness | None = None,
    n_speakers: int = 2,
) -> Transcript:
    """Role-attributed transcript of one preprocessed call (`audio.prepare.Prepared`).

    Args:
        prep: the call's role tracks and VAD speech.
        asr: the (cached) ASR backend.
        agent_likeness: scores a mono call's speakers (`asr.roles.pick_agent`); None makes
            the first speaker the agent. Stereo calls take roles from their channels.
        n_speakers: speakers diarization looks for in a mono call.
    """
    if prep.roles_from == "channels":
        segments = []
        roles = list(prep.tracks)
        decoded = asr.transcribe_many([(prep.tracks[r], prep.speech[r]) for r in roles])
        for role, track_segments in zip(roles, decoded, strict=True):
            for s in track_segments:
                segments.extend(_split_on_pauses(role, s.words))
        segments.sort(key=lambda s: (s.start, s.role))
        return Transcript(segments, dict(prep.speech), dict(prep.tracks), "channels")
    return _transcribe_mono(prep, asr, agent_likeness, n_speakers)


def _transcribe_mono(prep, asr, agent_likeness, n_speakers) -> Transcript:
    x, speech = prep.tracks["mono"], prep.speech["mono"]
    asr_segments = asr.transcribe(x, speech)
    turns = diarize(x, speech, n_speakers=n_speakers) if speech else []
    # Words go to the speaker turn that holds their midpoint (nearest turn otherwise).
    words_by_turn: dict[int, list[Word]] = {i: [] for i in range(len(turns))}
    for seg in asr_segments:
        for w in seg.words:
            if turns:
                words_by_turn[_turn_of((w.start + w.end) / 2, turns)].append(w)
    texts: dict[int, list[tuple[float, str]]] = {}
    for i, (start, _end, spk) in enumerate(turns):
        if words_by_turn[i]:
            texts.setdefault(spk, []).append((start, " ".join(w.word for w in words_by_turn[i])))
    agent = pick_agent(texts, agent_likeness) if texts else 0
    role_of = {spk: ("agent" if spk == agent else "customer") for _s, _e, spk in turns}

    segments, activity = [], {"agent": [], "customer": []}
    for i, (start, end, spk) in enumerate(turns):
        role = role_of[spk]
        activity[role].append((start, end))
        segments.extend(_split_on_pauses(role, words_by_turn[i]))
    tracks = {role: _mask(x, activity[role]) for role in ("agent", "customer")}
    return Transcript(segments, activity, tracks, "diarization")


def _split_on_pauses(role: str, words: list[Word], max_gap_s: float = MAX_PAUSE_S) -> list[Segment]:
    """Cut a run of words into segments at pauses, so a transcript line is one utterance.

    ASR decodes merged windows of up to 30 s; without this a line (and the evidence that
    points at it) would span many turns.
    """
    groups: list[list[Word]] = []
    for w in words:
        if groups and w.start - groups[-1][-1].end <= max_gap_s:
            groups[-1].append(w)
        else:
            groups.append([w])
    return [
        _to_segment(role, g[0].start, g[-1].end, g, " ".join(w.word.strip() for w in g))
        for g in groups
    ]


def _turn_of(t: float, turns: list[tuple[float, float, int]]) -> int:
    best, best_d = 0, float("inf")
    for i, (s, e, _spk) in enumerate(turns):
        d = 0.0 if s <= t <= e else min(abs(t - s), abs(t - e))
        if d < best_d:
            best, best_d = i, d
    return best


def _mask(x: np.ndarray, intervals: list[Interval], sr: int = SAMPLE_RATE_HZ) -> np.ndarray:
    out = np.zeros_like(x)
    for s, e in intervals:
        a, b = int(s * sr), int(e * sr)
        out[a:b] = x[a:b]
    return out


def _to_segment(role: str, start: float, end: float, words: list[Word], text: str) -> Segment:
    return Segment(
        role=role,
        start=round(start, 3),
        end=round(end, 3),
        text=text.strip(),
        words=[
            Word(
                word=w.word.strip(),
                start=round(w.start, 3),
                end=round(w.end, 3),
                probability=None if w.probability is None else round(w.probability, 3),
            )
            for w in words
        ],
    )


def run(
    cfg: TranscribeConfig,
    agent_likeness: AgentLikeness | None,
    preprocessed_dir: Path | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
) -> dict:
    """Transcribe every preprocessed call into `out_dir/<id>.json`.

    `agent_likeness` picks the agent on mono calls (see `transcribe_prepared`).
    """
    from callqa.audio.preprocess import load_prepared

    src = Path(preprocessed_dir or cfg.preprocessed_dir)
    out = Path(out_dir or cfg.out_dir)
    t0 = time.perf_counter()
    asr = CachedAsr(load_backend(cfg), cfg)  # first: a bad model is a config error (exit 2)
    call_dirs = sorted(p for p in src.iterdir() if p.is_dir()) if src.exists() else []
    if not call_dirs:
        raise FileNotFoundError(f"no preprocessed calls in {src}: run `callqa preprocess` first")
    out.mkdir(parents=True, exist_ok=True)
    done, failed, audio_s = 0, 0, 0.0
    from callqa.progress import track

    for call_dir in track(call_dirs, "transcribe", enabled=progress and cfg.progress):
        try:
            prep = load_prepared(call_dir)
            tr = transcribe_prepared(prep, asr, agent_likeness, cfg.diarization_speakers)
        except Exception as err:  # noqa: BLE001 - one bad call must not stop the batch
            logger.error("%s: transcription failed: %s", call_dir.name, err)
            failed += 1
            continue
        record = {
            "call_id": call_dir.name,
            "roles_from": tr.roles_from,
            "asr": {"backend": asr.backend.name, "model": asr.backend.model_id},
            "speech": tr.speech,
            "segments": [s.model_dump() for s in tr.segments],
        }
        with atomic_path(out / f"{call_dir.name}.json") as tmp:
            tmp.write_text(json.dumps(record), encoding="utf-8")
        done += 1
        audio_s += prep.duration_s
    wall = time.perf_counter() - t0
    summary = {
        "calls": len(call_dirs),
        "transcribed": done,
        "from_cache_tracks": asr.hits,
        "failed": failed,
        "audio_s": round(audio_s, 1),
        "wall_s": round(wall, 1),
        "out_dir": str(out),
    }
    logger.debug("transcribe: %s", summary)
    return summary
