"""Mono speaker-role benchmark: diarization frame accuracy, agent identification, seconds per call.

Run from the project root: `PYTHONPATH=src python benchmarks/bench_roles.py [--quick]`

Cases, all real or rendered speech; only the first needs hand labels:
- the shared 30 s phone-style conversation with its `.rttm`, and a copy of it sent through an
  8 kHz 8-bit mu-law telephone round trip;
- mono mixes of two-channel calls made from RAVDESS actors 01-08 (one actor per channel, one
  clip per turn, pauses between), where per-channel Silero VAD is the reference, as for stereo
  calls: balanced, one-speaker-dominant (10 turns against 2), and telephone versions. RAVDESS
  is acted emotion (shouting, whispering), a harder case for a speaker encoder than a call;
- LibriVox + JFK (two very different recordings);
- synthetic stereo calls from `callqa.data.synth` (channel 0 agent, 1 customer), mixed to mono.
  On these the agent is also identified (`pick_agent` on the script's turn texts, the default
  scorecard's greeting/closing examples) and role accuracy is measured without any mapping.

Frame accuracy: 10 ms frames where the reference has exactly one speaker, best one-to-one
speaker mapping; frames the VAD missed count as wrong. Seconds per call = `diarize` only.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import logging
import time
from pathlib import Path

import numpy as np

from callqa.asr.diarize import diarize
from callqa.asr.roles import assign_roles, frame_accuracy, pick_agent
from callqa.audio.io import decode_bytes, load_audio, resample, to_mono
from callqa.audio.vad import detect_speech

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"
SR = 16000


def load_16k(path: Path) -> np.ndarray:
    audio = load_audio(path)
    return resample(to_mono(audio.samples), audio.sample_rate_hz, SR)


def telephone(x: np.ndarray) -> np.ndarray:
    """8 kHz, 8-bit mu-law round trip, back to 16 kHz: what a telephone recording looks like."""
    mu = 255.0
    narrow = np.clip(resample(x, SR, 8000), -1.0, 1.0)
    y = np.sign(narrow) * np.log1p(mu * np.abs(narrow)) / np.log1p(mu)
    y = np.round((y + 1) * 127.5) / 127.5 - 1  # 8-bit codes
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
    """Per-channel VAD as the reference turns (channel 0 = agent, 1 = customer)."""
    ref = []
    for ch, role in enumerate(("agent", "customer")):
        ref += [(s, e, role) for s, e in detect_speech(stereo[ch], SR)]
    return sorted(ref)


def ravdess_cases(rng: np.random.Generator, n_pairs: int):
    root = REALDATA / "emotion" / "ravdess"
    by_actor: dict[str, list[Path]] = {}
    with open(root / "labels.tsv") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            by_actor.setdefault(row["speaker"], []).append(root / row["file"])
    pairs = list(itertools.combinations(sorted(by_actor), 2))
    rng.shuffle(pairs)
    cache: dict[Path, np.ndarray] = {}

    def clips(actor: str, n: int) -> list[np.ndarray]:
        picks = rng.choice(len(by_actor[actor]), size=n, replace=False)
        paths = [by_actor[actor][i] for i in picks]
        return [cache.setdefault(p, load_16k(p)) for p in paths]

    for i, (a, b) in enumerate(pairs[:n_pairs]):
        stereo = alternate(clips(a, 8), clips(b, 8), rng)
        yield f"ravdess {a[-2:]}+{b[-2:]}", "ravdess balanced", stereo
        if i % 2 == 0:
            dominant = alternate(clips(a, 10), clips(b, 2), rng, order="aaaabaaaaaba")
            yield f"ravdess {a[-2:]}>>{b[-2:]}", "ravdess dominant", dominant
        if i % 3 == 0:
            tel = np.stack([telephone(c) for c in stereo])
            yield f"ravdess {a[-2:]}+{b[-2:]} tel", "ravdess telephone", tel


def librivox_jfk_case(rng: np.random.Generator):
    asr = REALDATA / "asr"
    libri = [load_16k(asr / f"librivox_ss01_08{n}0.wav") for n in (7, 8, 9)]
    jfk = load_16k(asr / "jfk.flac")
    segs = detect_speech(jfk, SR)  # cut JFK at his pauses into three turns
    thirds = [t for t in np.array_split(np.arange(len(segs)), 3) if len(t)]
    jfk_parts = [jfk[int(segs[t[0]][0] * SR) : int(segs[t[-1]][1] * SR)] for t in thirds]
    return "librivox+jfk", "librivox+jfk", alternate(libri, jfk_parts, rng)


def synth_cases(n_calls: int, seed: int):
    """Rendered stereo calls (half of them telephone quality) and their sidecars."""
    from callqa.config import SynthConfig
    from callqa.data.synth import call_seeds, failure_plan, synth_call

    for telephone_band in (False, True):
        n = n_calls // 2 if telephone_band else n_calls - n_calls // 2
        cfg = SynthConfig(n_calls=max(n, 1), telephone=telephone_band, seed=seed)
        seeds = call_seeds(seed + telephone_band, n)
        for s, failures in zip(seeds, failure_plan(cfg, n), strict=True):
            data, sidecar = synth_call(s, failures, cfg)
            audio = decode_bytes(data)
            stereo = resample(audio.samples, audio.sample_rate_hz, SR)
            kind = "synth telephone" if telephone_band else "synth"
            yield f"synth {s % 100000:05d}", kind, stereo, sidecar


def identify_agent(turns, sidecar: dict, reference, agent_likeness):
    """(agent picked correctly, role frame accuracy) using the script's turn texts."""
    if not turns:
        return False, 0.0
    texts: dict[int, list[tuple[float, str]]] = {}
    for t in sidecar["turns"]:
        overlap = {}
        for s, e, spk in turns:
            overlap[spk] = overlap.get(spk, 0.0) + max(0.0, min(e, t["end"]) - max(s, t["start"]))
        spk = max(overlap, key=overlap.get)
        texts.setdefault(spk, []).append((t["start"], t["text"]))
    agent = pick_agent(texts, agent_likeness) if texts else turns[0][2]
    agent_time: dict[int, float] = {}
    for s, e, spk in turns:
        for rs, re_, role in reference:
            if role == "agent":
                agent_time[spk] = agent_time.get(spk, 0.0) + max(0.0, min(e, re_) - max(s, rs))
    true_agent = max(agent_time, key=agent_time.get) if agent_time else turns[0][2]
    roles = assign_roles(turns, agent)
    # Role accuracy needs no mapping: "agent" must be the agent.
    acc, _ = frame_accuracy(reference, roles, best_mapping=False)
    return agent == true_agent, acc


def run_case(x: np.ndarray) -> tuple[list, float]:
    speech = detect_speech(x, SR)
    t0 = time.perf_counter()
    turns = diarize(x, speech)
    return turns, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer RAVDESS pairs, synth calls")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rng = np.random.default_rng(args.seed)

    conv = REALDATA / "conversation" / "pyannote_sample"
    x = load_16k(conv.with_suffix(".wav"))
    rttm = read_rttm(conv.with_suffix(".rttm"))
    t0 = time.perf_counter()
    run_case(x)  # loads the encoder and warms librosa: not counted below
    load_s = time.perf_counter() - t0

    rows = []  # (name, kind, duration_s, accuracy, seconds, agent_ok, role_accuracy)
    for name, signal in (("conversation", x), ("conversation tel", telephone(x))):
        turns, sec = run_case(signal)
        rows.append((name, "conversation", signal.size / SR, frame_accuracy(rttm, turns)[0], sec))

    cases = [librivox_jfk_case(rng), *ravdess_cases(rng, 4 if args.quick else 12)]
    for name, kind, stereo in cases:
        mono = stereo.mean(axis=0)
        turns, sec = run_case(mono)
        acc = frame_accuracy(stereo_reference(stereo), turns)[0]
        rows.append((name, kind, mono.size / SR, acc, sec))

    from callqa.qa.scorecard import Scorecard
    from callqa.text.encoder import get_encoder

    card = Scorecard.load(ROOT / "scorecards" / "default.yaml")
    agent_likeness = card.agent_likeness(get_encoder("bundled"))
    for name, kind, stereo, sidecar in synth_cases(2 if args.quick else 6, args.seed):
        mono = stereo.mean(axis=0)
        turns, sec = run_case(mono)
        reference = stereo_reference(stereo)
        acc = frame_accuracy(reference, turns)[0]
        agent_ok, role_acc = identify_agent(turns, sidecar, reference, agent_likeness)
        rows.append((name, kind, mono.size / SR, acc, sec, agent_ok, role_acc))

    print(f"{'case':26s} {'kind':18s} {'dur_s':>6s} {'acc':>6s} {'diar_s':>7s} agent role_acc")
    for r in rows:
        extra = f" {'ok' if r[5] else 'WRONG':5s} {r[6]:.3f}" if len(r) > 5 else ""
        print(f"{r[0]:26s} {r[1]:18s} {r[2]:6.1f} {r[3]:6.3f} {r[4]:7.2f}{extra}")
    print("\nframe accuracy by kind (mean, min):")
    for kind in dict.fromkeys(r[1] for r in rows):
        acc = [r[3] for r in rows if r[1] == kind]
        print(f"  {kind:18s} n={len(acc):2d} mean={np.mean(acc):.3f} min={np.min(acc):.3f}")
    synth = [r for r in rows if len(r) > 5]
    if synth:
        print(
            f"agent identification on synth: {sum(r[5] for r in synth)}/{len(synth)} correct; "
            f"role frame accuracy mean {np.mean([r[6] for r in synth]):.3f}"
        )
    total_s, audio_s = sum(r[4] for r in rows), sum(r[2] for r in rows)
    print(
        f"diarize: {total_s / len(rows):.2f} s per call (mean call {audio_s / len(rows):.0f} s), "
        f"{60 * total_s / audio_s:.2f} s per minute of audio; first call +{load_s:.1f} s "
        "(model load)"
    )


if __name__ == "__main__":
    main()
