"""Mono diarization benchmark: frame accuracy on real two-speaker audio and seconds per call.

Run: `PYTHONPATH=src python benchmarks/bench_roles.py [--quick]`

Cases (all real speech; references need no hand labels except the first):
- the shared 30 s phone-style conversation with its `.rttm` (and a telephone-band copy of it),
- mono mixes of stereo calls built from RAVDESS actors 01-08, one actor per channel, turns
  alternating with pauses; the reference is per-channel Silero VAD, as for stereo calls.
  Balanced, one-speaker-dominant and 8 kHz mu-law telephone versions,
- a LibriVox + JFK mix (two very different recordings),
- stereo synthetic calls in `data/synth/` if they exist (channel 0 = agent, 1 = customer).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import logging
import sys
import time
from pathlib import Path

import numpy as np

from callqa.asr.roles import diarize, frame_accuracy
from callqa.audio.io import load_audio, resample, to_mono
from callqa.audio.vad import detect_speech

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
SYNTH_DIR = Path(__file__).resolve().parents[1] / "data" / "synth"
SR = 16000


def load_16k(path: Path) -> np.ndarray:
    audio = load_audio(path)
    return resample(to_mono(audio.samples), audio.sample_rate_hz, SR)


def telephone(x: np.ndarray) -> np.ndarray:
    """8 kHz, 8-bit mu-law round trip, back to 16 kHz: what a telephone recording looks like."""
    narrow = resample(x, SR, 8000)
    mu = 255.0
    y = np.sign(narrow) * np.log1p(mu * np.minimum(np.abs(narrow), 1.0)) / np.log1p(mu)
    y = np.round((y + 1) * 127.5) / 127.5 - 1  # 8-bit quantisation
    y = np.sign(y) * ((1 + mu) ** np.abs(y) - 1) / mu
    return resample(y.astype(np.float32), 8000, SR)


def read_rttm(path: Path) -> list[tuple[float, float, str]]:
    out = []
    for line in path.read_text().splitlines():
        f = line.split()
        if f and f[0] == "SPEAKER":
            start, dur = float(f[3]), float(f[4])
            out.append((start, start + dur, f[7]))
    return out


def alternate(
    clips_a: list[np.ndarray], clips_b: list[np.ndarray], rng: np.random.Generator, order=None
) -> np.ndarray:
    """Stereo (2, n) call: A on channel 0, B on channel 1, one clip per turn with pauses.

    `order` is a string of "a"/"b" turns; the default alternates through both lists.
    """
    if order is None:
        order = "".join("ab"[i % 2] for i in range(len(clips_a) + len(clips_b)))
    ia, ib = iter(clips_a), iter(clips_b)
    parts, cursor = [], int(0.3 * SR)
    for who in order:
        clip = next(ia if who == "a" else ib)
        parts.append((0 if who == "a" else 1, cursor, clip))
        # RAVDESS clips carry ~0.5-1 s of silence at each end already; add 0-0.6 s more.
        cursor += clip.size + int(rng.uniform(0.0, 0.6) * SR)
    out = np.zeros((2, cursor + int(0.3 * SR)), dtype=np.float32)
    for ch, start, clip in parts:
        out[ch, start : start + clip.size] += clip
    return out


def stereo_reference(stereo: np.ndarray) -> list[tuple[float, float, str]]:
    ref = []
    for ch, role in enumerate(("agent", "customer")):
        ref += [(s, e, role) for s, e in detect_speech(stereo[ch], SR)]
    return sorted(ref)


def ravdess_cases(rng: np.random.Generator, quick: bool):
    root = REALDATA / "emotion" / "ravdess"
    by_actor: dict[str, list[Path]] = {}
    with open(root / "labels.tsv") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            by_actor.setdefault(row["speaker"], []).append(root / row["file"])
    actors = sorted(by_actor)
    pairs = list(itertools.combinations(actors, 2))
    rng.shuffle(pairs)
    pairs = pairs[: 4 if quick else 12]
    cache: dict[Path, np.ndarray] = {}

    def clips(actor: str, n: int) -> list[np.ndarray]:
        picks = rng.choice(len(by_actor[actor]), size=n, replace=False)
        paths = [by_actor[actor][i] for i in picks]
        return [cache.setdefault(p, load_16k(p)) for p in paths]

    for i, (a, b) in enumerate(pairs):
        stereo = alternate(clips(a, 8), clips(b, 8), rng)
        yield f"ravdess {a}+{b}", stereo, "balanced"
        if i % 2 == 0:
            # One speaker dominates: 10 agent turns, 2 short customer turns.
            dom = alternate(clips(a, 10), clips(b, 2), rng, order="aaaabaaaaaba")
            yield f"ravdess {a}>>{b}", dom, "dominant"
        if i % 3 == 0:
            yield f"ravdess {a}+{b} tel", np.stack([telephone(c) for c in stereo]), "telephone"


def librivox_jfk_case(rng: np.random.Generator):
    asr = REALDATA / "asr"
    libri = [load_16k(asr / f"librivox_ss01_08{n}0.wav") for n in (7, 8, 9)]
    jfk = load_16k(asr / "jfk.flac")
    # Cut JFK at its pauses (VAD) into three turns.
    segs = detect_speech(jfk, SR)
    thirds = np.array_split(np.arange(len(segs)), 3)
    jfk_parts = [
        jfk[int(segs[t[0]][0] * SR) : int(segs[t[-1]][1] * SR)] for t in thirds if len(t)
    ]
    return "librivox+jfk", alternate(libri, jfk_parts, rng), "balanced"


def run_case(x: np.ndarray, reference) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    speech = detect_speech(x, SR)
    t1 = time.perf_counter()
    turns = diarize(x, speech)
    t2 = time.perf_counter()
    acc, labelled = frame_accuracy(reference, turns)
    return acc, labelled, t2 - t1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer RAVDESS pairs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rng = np.random.default_rng(args.seed)

    diarize(np.zeros(SR, np.float32), [(0.0, 0.5)])  # load nothing heavy: warm the imports only
    rows = []
    conv = REALDATA / "conversation" / "pyannote_sample"
    x = load_16k(conv.with_suffix(".wav"))
    ref = read_rttm(conv.with_suffix(".rttm"))
    rows.append(("conversation (rttm)", "conversation", x.size / SR, *run_case(x, ref)))
    rows.append(("conversation tel", "conversation", x.size / SR, *run_case(telephone(x), ref)))

    cases = [librivox_jfk_case(rng), *ravdess_cases(rng, args.quick)]
    for path in sorted(SYNTH_DIR.glob("*.wav"))[: 4 if args.quick else 12]:
        audio = load_audio(path)
        if audio.channels == 2:
            cases.append((f"synth {path.stem}", resample(audio.samples, audio.sample_rate_hz, SR),
                          "synth"))
    for name, stereo, kind in cases:
        reference = stereo_reference(stereo)
        mono = stereo.sum(axis=0) / 2
        rows.append((name, kind, mono.size / SR, *run_case(mono, reference)))

    print(f"{'case':32s} {'kind':13s} {'dur_s':>6s} {'acc':>6s} {'lab':>6s} {'diar_s':>7s}")
    for name, kind, dur, acc, lab, sec in rows:
        print(f"{name:32s} {kind:13s} {dur:6.1f} {acc:6.3f} {lab:6.3f} {sec:7.2f}")
    print("\nsummary (mean frame accuracy, best speaker mapping, single-speaker reference frames):")
    kinds = sorted({r[1] for r in rows})
    for kind in kinds:
        sel = [r for r in rows if r[1] == kind]
        print(f"  {kind:13s} n={len(sel):2d} acc={np.mean([r[3] for r in sel]):.3f} "
              f"min={np.min([r[3] for r in sel]):.3f}")
    total_dur = sum(r[2] for r in rows)
    total_s = sum(r[5] for r in rows)
    print(f"  diarize speed: {total_s:.1f} s for {total_dur:.0f} s audio "
          f"({total_s / len(rows):.2f} s per call, {total_s / total_dur * 60:.2f} s per minute)")


if __name__ == "__main__":
    sys.exit(main())
