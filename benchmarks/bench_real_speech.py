"""What the trained model's emotion branch says on real speech and over a phone line.

The model trains on synthetic call voices and RAVDESS's studio actors (each clip also through
featurize's simulated phone line, `featurize.clip_channels`). This prints, for the shared real
recordings (../shared/realdata):

- each ASR file scored as one clip (no words, no speaker context): the top emotion and its
  probability, as recorded and 10 and 20 dB quieter (none of these files carries an emotion
  label; none is angry speech; a recording's gain should not change its emotion);
- the pyannote phone conversation through `callqa score`'s Scorer: each role's emotion;
- RAVDESS clips of `--actors` with their speaker context: clean, 20 dB quieter, and written as
  real 8 kHz 8-bit linear PCM files (by soundfile; featurize's `pcm8` clip copies simulate that
  format, so here only the actor is unseen, not the format): 4-class accuracy (neutral + calm ->
  neutral); and each clip through the Scorer as `callqa score` hears it (one-voice call, turns
  cut to ASR segments, no speaker context). The default model's test-split actor is actor02
  (featurize's speaker-disjoint split, `data/features/utterances.parquet`); any other actor of
  01-08 was trained on.

    python benchmarks/bench_real_speech.py [--model models/callqa-qa] [--actors actor02]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]


def _telephone_file(path: Path, out: Path) -> Path:
    """An 8 kHz, 8-bit unsigned PCM copy of a clip (an old phone-system export format)."""
    import soundfile as sf

    from callqa.audio.io import load_audio, resample, to_mono

    audio = load_audio(path)
    x = resample(to_mono(audio.samples), audio.sample_rate_hz, 8000)
    sf.write(out, np.clip(x, -1, 1), 8000, subtype="PCM_U8")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "callqa-qa")
    ap.add_argument("--actors", nargs="+", default=["actor02"])
    args = ap.parse_args()

    from ravdess_cv import FOUR_CLASS, RAVDESS, REALDATA

    from callqa.audio.io import load_audio
    from callqa.audio.prepare import prepare
    from callqa.config import load_params
    from callqa.model.predict import Predictor
    from callqa.pipeline import Scorer

    params = load_params(ROOT / "params.yaml")
    predictor = Predictor.load(args.model, device="cpu")
    names = predictor.emotions

    def clip_probs(paths, speakers, gain_db=0.0):
        audios = [load_audio(p) for p in paths]
        for a in audios:  # a quieter recording of the same speech
            a.samples = a.samples * np.float32(10 ** (gain_db / 20))
        preps = [prepare(a, params.preprocess, with_logmel=True) for a in audios]
        return predictor.predict_clips(predictor.features.clip_features(preps), speakers)

    files = sorted(p for p in (REALDATA / "asr").iterdir() if p.suffix in (".wav", ".flac"))
    print(f"model {args.model}\n\nreal recordings, each one clip (no words, no speaker context)")
    gains = (0.0, -10.0, -20.0)
    print(f"  {'file':34s} " + "  ".join(f"{f'as recorded {g:+.0f} dB':18s}" for g in gains))
    by_gain = [clip_probs(files, None, g) for g in gains]
    for i, p in enumerate(files):
        cells = [f"{names[pe[i].argmax()]:8s} {pe[i].max():.3f}   " for pe in by_gain]
        print(f"  {p.name:34s} " + "  ".join(f"{c:18s}" for c in cells))

    conv = REALDATA / "conversation" / "pyannote_sample.wav"
    score_cfg = params.score.model_copy(
        update={"scorecard": ROOT / "scorecards" / "default.yaml", "model": args.model}
    )
    scorer = Scorer(params.preprocess, params.transcribe, score_cfg)
    result = scorer.score_path(conv).result
    print(f"\n{conv.name} through the Scorer (`callqa score`)")
    for role in ("agent", "customer"):
        e = getattr(result.emotion, role)
        print(f"  {role:8s} {e.label} {e.scores.get(e.label) if e.label else ''}")

    with open(RAVDESS / "labels.tsv", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["speaker"] in args.actors]
    rows = [r for r in rows if FOUR_CLASS.get(r["emotion"]) in names]
    truth = np.array([names.index(FOUR_CLASS[r["emotion"]]) for r in rows])
    speakers = [r["speaker"] for r in rows]
    print(f"\nRAVDESS {' '.join(args.actors)}: {len(rows)} clips, 4 classes, speaker context")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("16 kHz file", "16 kHz file -20 dB", "8 kHz 8-bit file"):
            paths = [RAVDESS / r["file"] for r in rows]
            if kind.startswith("8 kHz"):
                paths = [_telephone_file(p, Path(tmp) / f"{p.stem}.wav") for p in paths]
            pe = clip_probs(paths, speakers, -20.0 if kind.endswith("dB") else 0.0)
            print(f"  {kind:18s} accuracy {np.mean(pe.argmax(1) == truth):.3f}  "
                  f"mean top probability {pe.max(1).mean():.3f}")  # fmt: skip
    # As `callqa score` hears a clip: a one-voice call, its turn cut to the ASR segment, no
    # other clip of the speaker beside it (featurize.clip_speech makes training read it alike).
    top = []
    for r in rows:
        emotion = scorer.score_path(RAVDESS / r["file"]).result.emotion
        voiced = [e for e in (emotion.agent, emotion.customer) if e.label]
        top.append(names.index(voiced[0].label) if voiced else -1)
    print(
        f"  {'each clip scored':18s} accuracy {np.mean(np.array(top) == truth):.3f}  "
        "(`callqa score`: ASR segments, no speaker context)"
    )


if __name__ == "__main__":
    sys.exit(main())
