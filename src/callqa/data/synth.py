"""`callqa synth`: labelled synthetic two-party calls rendered with eSpeak NG.

SynthConfig -> `<out>/call_00000.wav` (agent left, customer right; or a mono mix; or 8 kHz mu-law)
plus `call_00000.json` ground truth (CONTRACTS.md "Synth sidecar"; also "bank" and "split" of the
call, and per turn the role's eSpeak "voice", the "intents" its sentences carry and their
"sentence_ids"). A train-bank corpus holds train, val and test calls, disjoint by sentence and
voice (synth_splits). Labels are measured on the
rendered audio with the same VAD settings (params' `preprocess.vad`) and metric functions that
scoring uses, never read off the script settings; the planned values ride beside them, so a bug
shared by synth and scoring shows up as a disagreement with the plan.

Planning (script, timing plan, labels) lives in synth_plan, rendering (eSpeak, mixing, WAV) in
synth_render; this module runs the stage.

    >>> run(SynthConfig(n_calls=4), VadConfig(), Path("/tmp/c"), progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import re
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from callqa.audio import metrics
from callqa.config import EMOTIONS, SynthConfig, VadConfig
from callqa.data.phrases import get_bank
from callqa.data.synth_labels import compute_labels, planned_values
from callqa.data.synth_plan import KIND_INTENT, call_seeds, failure_plan, plan_call
from callqa.data.synth_render import SAMPLE_RATE_HZ, encode_wav, mix_output, render_call, vad
from callqa.data.synth_splits import BANK_SPLIT, bank_for, call_split
from callqa.schemas import CHECK_IDS

logger = logging.getLogger(__name__)

_CALL_RE = re.compile(r"^call_(\d{5,})\.(wav|json)$")


def synth_call(
    seed: int,
    failures: dict[str, bool],
    cfg: SynthConfig,
    vad_cfg: VadConfig,
    split: str | None = None,
) -> tuple[bytes, dict]:
    """One call: (WAV bytes, sidecar dict). Deterministic in (seed, failures, cfg, vad_cfg, split).

    `vad_cfg` is the params' `preprocess.vad`: labels are measured with the VAD settings that
    scoring uses. `split` (train-bank corpora; default "train") picks the call's bank part and
    voices (synth_splits.call_split gives call i's).
    """
    from callqa.files import bytes_id

    split = split or BANK_SPLIT.get(cfg.phrase_bank, "train")
    bank, restrict = bank_for(cfg, split)
    plan = plan_call(seed, failures, bank, restrict)
    rendered = render_call(plan, vad_cfg)
    activity = {r: metrics.merge_intervals(vad(x, vad_cfg)) for r, x in rendered.tracks.items()}
    duration_s = rendered.tracks["agent"].size / SAMPLE_RATE_HZ
    agent_words = sum(len(t["text"].split()) for t in rendered.turns if t["role"] == "agent")
    checks, events, wpm = compute_labels(activity, rendered.turns, duration_s, agent_words)
    samples, rate, subtype = mix_output(rendered, activity, cfg)
    data = encode_wav(samples, rate, subtype)
    mismatched = [c for c in CHECK_IDS if checks[c] == failures[c]]
    if mismatched:
        logger.warning("call seed %s: planned and measured labels differ for %s", seed, mismatched)
    r3 = lambda v: round(float(v), 3)  # noqa: E731
    sidecar = {
        "call_id": bytes_id(data),
        "seed": seed,
        "sample_rate_hz": rate,
        "channels": int(samples.shape[0]),
        "channel_roles": ["agent", "customer"] if samples.shape[0] == 2 else None,
        "duration_s": r3(samples.shape[1] / rate),
        "checks": checks,
        "emotion": dict(plan.emotion),
        "agent_speech_rate_wpm": round(float(wpm), 1) if wpm is not None else None,
        "events": [{**ev, "start": r3(ev["start"]), "end": r3(ev["end"])} for ev in events],
        "turns": [
            {
                "role": t["role"],
                "start": r3(t["start"]),
                "end": r3(t["end"]),
                "text": t["text"],
                "voice": plan.voices[t["role"]].name,
                "intents": list(
                    dict.fromkeys(KIND_INTENT[k] for k, _ in line.parts if k in KIND_INTENT)
                ),
                "sentence_ids": list(line.sids),
            }
            for t, line in zip(rendered.turns, plan.lines, strict=True)
        ],
        "planned": planned_values(plan, rendered.planned_overtalk_s),
        "bank": bank.name,
        "split": split,
    }
    return data, sidecar


# ---------------------------------------------------------------------------------------------
# Stage: files, workers, progress, summary
# ---------------------------------------------------------------------------------------------


def _write_call(out_dir: Path, index: int, data: bytes, sidecar: dict) -> None:
    from callqa.files import atomic_path

    stem = out_dir / f"call_{index:05d}"
    with atomic_path(stem.with_suffix(".wav")) as tmp:
        tmp.write_bytes(data)
    with atomic_path(stem.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=1) + "\n", encoding="utf-8")


def _synth_one(
    index: int, seed: int, failures: dict, cfg: SynthConfig, vad_cfg: VadConfig, out_dir: Path
) -> dict:
    data, sidecar = synth_call(seed, failures, cfg, vad_cfg, call_split(cfg, index))
    _write_call(out_dir, index, data, sidecar)
    return {
        "index": index,
        "checks": sidecar["checks"],
        "emotion": sidecar["emotion"]["customer"],
        "duration_s": sidecar["duration_s"],
        "mismatch": sum(sidecar["checks"][c] == failures[c] for c in CHECK_IDS),
    }


def _init_worker() -> None:
    import torch

    # Each worker is one of several processes: one torch thread each avoids oversubscription.
    torch.set_num_threads(1)


def _remove_stale(out_dir: Path, n: int) -> int:
    """Delete call files from an earlier, larger run (only names this stage writes)."""
    removed = 0
    if out_dir.is_dir():
        for p in out_dir.iterdir():
            m = _CALL_RE.match(p.name)
            if m and int(m.group(1)) >= n:
                p.unlink()
                removed += 1
    return removed


def run(
    cfg: SynthConfig,
    vad_cfg: VadConfig,
    out_dir: Path | None = None,
    n_calls: int | None = None,
    progress: bool = True,
) -> dict:
    """Render `n_calls` calls into `out_dir` (defaults from `cfg`) and summarise the labels.

    `vad_cfg` is the params' `preprocess.vad` (labels use the VAD settings scoring uses).

    Returns:
        {"n_calls", "out_dir", "seconds", "audio_s", "mean_call_s", "violations" (check -> calls
        that fail it), "customer_emotion" (emotion -> calls), "plan_mismatches" (labels whose
        measured value differs from the plan; expected 0)}.
    """
    from callqa.progress import track

    t0 = time.perf_counter()
    out_dir = Path(out_dir if out_dir is not None else cfg.out_dir)
    n = int(n_calls if n_calls is not None else cfg.n_calls)
    if n < 1:
        raise ValueError(f"n_calls must be at least 1 (got {n}); set synth.n_calls or pass -n")
    get_bank(cfg.phrase_bank)  # fail early on an unknown bank
    out_dir.mkdir(parents=True, exist_ok=True)
    removed = _remove_stale(out_dir, n)
    if removed:
        logger.info("removed %d call files beyond call %d from %s", removed, n - 1, out_dir)
    seeds, plans = call_seeds(cfg.seed, n), failure_plan(cfg, n)
    workers = min(cfg.workers, n)
    results = []
    if workers == 1:
        jobs = (_synth_one(i, seeds[i], plans[i], cfg, vad_cfg, out_dir) for i in range(n))
        results = list(track(jobs, "synth", enabled=progress, total=n))
    else:
        # eSpeak is one global engine per process: parallelise with processes. spawn, not fork:
        # forking after torch / onnxruntime thread pools have started can hang.
        ctx = get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
            futures = [
                pool.submit(_synth_one, i, seeds[i], plans[i], cfg, vad_cfg, out_dir)
                for i in range(n)
            ]
            done = (f.result() for f in as_completed(futures))
            results = list(track(done, "synth", enabled=progress, total=n))
    results.sort(key=lambda r: r["index"])
    audio_s = sum(r["duration_s"] for r in results)
    summary = {
        "n_calls": n,
        "out_dir": str(out_dir),
        "seconds": round(time.perf_counter() - t0, 1),
        "audio_s": round(audio_s, 1),
        "mean_call_s": round(audio_s / n, 1),
        "violations": {c: sum(not r["checks"][c] for r in results) for c in CHECK_IDS},
        "customer_emotion": {e: sum(r["emotion"] == e for r in results) for e in EMOTIONS},
        "plan_mismatches": sum(r["mismatch"] for r in results),
    }
    logger.debug(
        "synth: %d calls (%.0f s of audio) in %s in %.1f s",
        n,
        audio_s,
        out_dir,
        summary["seconds"],
    )
    return summary
