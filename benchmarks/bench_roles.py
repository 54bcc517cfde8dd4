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
- synthetic stereo calls from `callqa.data.synth` (channel 0 agent, 1 customer; who speaks
  first is random per call), mixed to mono. On these the agent is also identified by the path
  scoring uses (`callqa.pipeline.Scorer` on the mono file: diarization, ASR, agent pick), from
  audio only, never the script text; role accuracy is measured without any mapping, against
  per-channel VAD of the stereo original. The sidecar gives only who spoke first, to split
  the figure and to show what the first-speaker fallback alone would get.

Frame accuracy: 10 ms frames where the reference has exactly one speaker, best one-to-one
speaker mapping; frames the VAD missed count as wrong. Seconds per call = `diarize` only.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from callqa.asr.diarize import diarize
from callqa.asr.roles import frame_accuracy
from callqa.audio.io import decode_bytes, load_audio, resample, to_mono
from callqa.audio.vad import detect_speech
from callqa.data.phrases import BANK_NAMES

ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("CALLQA_REALDATA", ROOT.parent / "shared" / "realdata"))
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


def synth_cases(n_calls: int, seed: int, phrase_bank: str):
    """Rendered stereo calls (half of them telephone quality) and their sidecars."""
    from callqa.config import load_params
    from callqa.data.synth import call_seeds, failure_plan, synth_call

    params = load_params(ROOT / "params.yaml")
    for telephone_band in (False, True):
        n = n_calls // 2 if telephone_band else n_calls - n_calls // 2
        update = {"telephone": telephone_band, "seed": seed, "phrase_bank": phrase_bank}
        cfg = params.synth.model_copy(update={**update, "channels": "stereo"})
        seeds = call_seeds(seed + telephone_band, n)
        for s, failures in zip(seeds, failure_plan(cfg, n), strict=True):
            data, sidecar = synth_call(s, failures, cfg, params.preprocess.vad)
            audio = decode_bytes(data)
            stereo = resample(audio.samples, audio.sample_rate_hz, SR)
            kind = "synth telephone" if telephone_band else "synth"
            yield f"synth {s % 100000:05d}", kind, stereo, sidecar


def identify_agent(scorer, mono: np.ndarray, reference, folder: Path, name: str):
    """(agent picked correctly, role frame accuracy) from scoring the mono file, audio only.

    Role frame accuracy is over the reference's single-speaker frames that the scored segments
    cover.

    The agent is right when the time the scorer labels `agent` lies mostly on the reference
    agent's speech.
    """
    import soundfile as sf

    path = folder / f"{name.replace(' ', '_')}.wav"
    sf.write(path, mono, SR, subtype="PCM_16")
    res = scorer.score(path)
    if not hasattr(res, "segments"):
        print(f"  {name}: {res.error.code} {res.error.message}")
        return False, 0.0
    roles = [(seg.start, seg.end, seg.role) for seg in res.segments]
    on = {"agent": 0.0, "customer": 0.0}
    for s, e, role in roles:
        if role == "agent":
            for rs, re_, ref_role in reference:
                on[ref_role] += max(0.0, min(e, re_) - max(s, rs))
    # Role accuracy needs no mapping: "agent" must be the agent. Over the frames the scored
    # segments cover (ASR segments leave the pauses between them unlabelled).
    acc, share = frame_accuracy(reference, roles, best_mapping=False)
    return on["agent"] > on["customer"], acc / share if share > 0 else 0.0


def run_case(x: np.ndarray) -> tuple[list, float]:
    speech = detect_speech(x, SR)
    t0 = time.perf_counter()
    turns = diarize(x, speech)
    return turns, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer RAVDESS pairs, synth calls")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-synth", type=int, default=20, help="synth calls (half telephone)")
    parser.add_argument("--synth-seed", type=int, default=930000, help="no test uses it")
    parser.add_argument(
        "--phrase-bank", default="test", choices=BANK_NAMES, help="synth calls' bank"
    )
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

    from callqa.config import load_params
    from callqa.pipeline import Scorer

    work = Path(tempfile.mkdtemp(prefix="callqa-roles-"))
    os.environ.setdefault("CALLQA_CACHE_DIR", str(work / "cache"))
    params = load_params(ROOT / "params.yaml")
    scorer = Scorer(params.preprocess, params.transcribe, params.score)
    n_synth = 4 if args.quick else args.n_synth
    for name, kind, stereo, sidecar in synth_cases(n_synth, args.synth_seed, args.phrase_bank):
        mono = stereo.mean(axis=0)
        turns, sec = run_case(mono)
        reference = stereo_reference(stereo)
        acc = frame_accuracy(reference, turns)[0]
        agent_ok, role_acc = identify_agent(scorer, mono, reference, work, name)
        first = sidecar["turns"][0]["role"]
        rows.append((name, kind, mono.size / SR, acc, sec, agent_ok, role_acc, first))

    print(
        f"{'case':26s} {'kind':18s} {'dur_s':>6s} {'acc':>6s} {'diar_s':>7s} agent role_acc first"
    )
    for r in rows:
        extra = f" {'ok' if r[5] else 'WRONG':5s} {r[6]:8.3f} {r[7]}" if len(r) > 5 else ""
        print(f"{r[0]:26s} {r[1]:18s} {r[2]:6.1f} {r[3]:6.3f} {r[4]:7.2f}{extra}")
    print("\nframe accuracy by kind (mean, min):")
    for kind in dict.fromkeys(r[1] for r in rows):
        acc = [r[3] for r in rows if r[1] == kind]
        print(f"  {kind:18s} n={len(acc):2d} mean={np.mean(acc):.3f} min={np.min(acc):.3f}")
    synth = [r for r in rows if len(r) > 5]
    if synth:
        print(
            f"agent identification on synth ({args.phrase_bank} phrases, scoring path, audio "
            f"only): {sum(r[5] for r in synth)}/{len(synth)} correct; "
            f"role frame accuracy mean {np.mean([r[6] for r in synth]):.3f}"
        )
        for first in ("agent", "customer"):
            part = [r for r in synth if r[7] == first]
            print(f"  {first} spoke first: {sum(r[5] for r in part)}/{len(part)} correct")
        agent_first = sum(r[7] == "agent" for r in synth)
        print(f"  the first-speaker rule alone would get {agent_first}/{len(synth)}")
    total_s, audio_s = sum(r[4] for r in rows), sum(r[2] for r in rows)
    print(
        f"diarize: {total_s / len(rows):.2f} s per call (mean call {audio_s / len(rows):.0f} s), "
        f"{60 * total_s / audio_s:.2f} s per minute of audio; first call +{load_s:.1f} s "
        "(model load)"
    )


if __name__ == "__main__":
    main()
