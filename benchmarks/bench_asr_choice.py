"""Whisper tiny.en (`bundled`) against Whisper base (`base`) as callqa's English ASR.

Scores the same fresh stereo calls from the `test` phrase bank (seed range 940000, which no
other benchmark or test uses) once per ASR model and prints, per model: per-check F1 (positive
class = violation, as in bench_scorecard.py) with the rules only and, given a trained model,
with rules + model (the rules-only checks are the same scorecard evaluated on the same result
without the model's outputs); normalised WER per role against the synth scripts; scoring time
(models loaded before timing, a cold callqa cache per ASR model); repetition loops; and the
role speech that no ASR word covers ("speech lost").

    python benchmarks/bench_asr_choice.py [--n 40] [--seed 940000] [--model DIR | --no-model]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
ROOT = Path(__file__).resolve().parents[1]
# label -> transcribe overrides; "base beam 1" asks whether greedy decoding buys base's
# accuracy back into the time budget.
ASR_MODELS = {
    "tiny.en": {"model": "bundled"},
    "base": {"model": "base"},
    "base beam 1": {"model": "base", "beam_size": 1},
}
ROLES = ("agent", "customer")
# Word times from cross-attention are rough and speech has short pauses between words: a word
# covers its own time and this much either side before VAD speech counts as lost.
WORD_PAD_S = 0.3
HOLE_S = 2.0  # a lost stretch at least this long is a "hole" (a dropped sentence or more)


# --------------------------------------------------------------------------- loops and coverage
def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def is_loop(text: str, min_n: int = 3, max_n: int = 10, repeats: int = 3) -> bool:
    """An n-gram of >= `min_n` words repeated `repeats`+ times in a row, or one sentence
    `repeats`+ times.

    >>> is_loop("thank you for calling thank you for calling thank you for calling")
    True
    >>> is_loop("Yes. Yes. Fine.")
    False
    """
    tokens = _tokens(text)
    for n in range(min_n, max_n + 1):
        for i in range(len(tokens) - repeats * n + 1):
            gram = tokens[i : i + n]
            if all(tokens[i + k * n : i + (k + 1) * n] == gram for k in range(1, repeats)):
                return True
    sentences = [" ".join(_tokens(s)) for s in re.split(r"[.!?]+", text)]
    sentences = [s for s in sentences if s]
    return any(sentences.count(s) >= repeats for s in set(sentences))


def uncovered(speech: list[tuple[float, float]], covers: list[tuple[float, float]]):
    """Stretches of `speech` that no interval of `covers` overlaps."""
    from callqa.audio.metrics import merge_intervals

    out = []
    covers = merge_intervals(covers)
    for s, e in merge_intervals(speech):
        cur = s
        for cs, ce in covers:
            if ce <= cur or cs >= e:
                continue
            if cs > cur:
                out.append((cur, cs))
            cur = max(cur, ce)
        if cur < e:
            out.append((cur, e))
    return out


class LoopLog(logging.Handler):
    """Counts the decoding loops callqa's ASR backend drops or cuts (its WARNING lines)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.dropped: list[tuple[float, float]] = []  # window (track seconds; track unknown)
        self.cut = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("dropped a repetition loop"):
            self.dropped.append((float(record.args[0]), float(record.args[1])))
        elif record.msg.startswith("cut a repetition loop"):
            self.cut += 1


# --------------------------------------------------------------------------- one model's run
@dataclass
class Run:
    label: str
    audio_s: float = 0.0
    wall_s: float = 0.0
    failed: int = 0
    pred: list[dict] = field(default_factory=list)  # check -> passed (rules + model if any)
    rules: list[dict] = field(default_factory=list)  # rules only (with a trained model)
    hyp: dict = field(default_factory=lambda: {r: [] for r in ROLES})
    loops_out: int = 0  # looping segments left in the output
    loops_dropped: int = 0
    loops_cut: int = 0
    lost: dict = field(default_factory=lambda: {r: 0.0 for r in ROLES})
    lost_in_loops_s: float = 0.0
    holes: int = 0
    per_call_lost: list[tuple[float, str, float]] = field(default_factory=list)


def score_all(label, asr: dict, calls, params, model_dir, work, warm=False) -> Run:
    """Score every call with one ASR model (cold cache unless `warm`), timing only
    `score_path`."""
    from callqa.pipeline import Scorer
    from callqa.qa.evaluate import evaluate

    cache = work / f"cache-{label.replace(' ', '-')}"
    if not warm:
        shutil.rmtree(cache, ignore_errors=True)
    os.environ["CALLQA_CACHE_DIR"] = str(cache)
    tr_cfg = params.transcribe.model_copy(update={**asr, "progress": False})
    scorer = Scorer(params.preprocess, tr_cfg, params.score.model_copy(update={"model": model_dir}))
    loops = LoopLog()
    logging.getLogger("callqa.asr.backend").addHandler(loops)
    run = Run(label)
    try:
        for wav, _sidecar, speech in calls:
            n_dropped = len(loops.dropped)
            t0 = time.perf_counter()
            try:
                res = scorer.score_path(wav).result
            except Exception as err:  # noqa: BLE001 - report and go on
                print(f"  {label} {wav.name}: {type(err).__name__}: {err}", flush=True)
                run.failed += 1
                continue
            run.wall_s += time.perf_counter() - t0
            run.audio_s += res.duration_s
            run.pred.append({c.id: c.passed for c in res.checks})
            if model_dir is not None:
                checks, _, _ = evaluate(
                    scorer.scorecard, res.segments, res.metrics, res.duration_s, scorer.encoder
                )
                run.rules.append({c.id: c.passed for c in checks})
            run.loops_out += sum(is_loop(s.text) for s in res.segments)
            loop_windows = loops.dropped[n_dropped:]
            call_lost, worst_hole = 0.0, 0.0
            for role in ROLES:
                segs = [s for s in res.segments if s.role == role]
                run.hyp[role].append(" ".join(s.text for s in segs))
                words = [(w.start - WORD_PAD_S, w.end + WORD_PAD_S) for s in segs for w in s.words]
                gaps = uncovered(speech[role], words)
                lost = sum(e - s for s, e in gaps)
                run.lost[role] += lost
                call_lost += lost
                run.holes += sum(e - s >= HOLE_S for s, e in gaps)
                worst_hole = max([worst_hole] + [e - s for s, e in gaps])
                run.lost_in_loops_s += sum(
                    max(0.0, min(e, le) - max(s, ls)) for s, e in gaps for ls, le in loop_windows
                )
            run.per_call_lost.append((call_lost, wav.name, worst_hole))
    finally:
        logging.getLogger("callqa.asr.backend").removeHandler(loops)
    run.loops_dropped, run.loops_cut = len(loops.dropped), loops.cut
    del scorer
    gc.collect()
    return run


# --------------------------------------------------------------------------- tables
def f1_cells(truth: list[dict], pred: list[dict], cid: str) -> tuple[str, int]:
    """'F1 (FP/FN)' of one check over the calls it was evaluated on, and its violations."""
    from sklearn.metrics import f1_score

    pairs = [
        (not t[cid], not p[cid]) for t, p in zip(truth, pred, strict=True) if p[cid] is not None
    ]
    if not pairs:
        return "n/a", 0
    y, yhat = zip(*pairs, strict=True)
    fp = sum(p and not t for t, p in pairs)
    fn = sum(t and not p for t, p in pairs)
    if not any(y) and not any(yhat):
        return "- (0/0)", 0  # F1 undefined: no violation, none flagged
    return f"{f1_score(y, yhat, zero_division=0):.3f} ({fp}/{fn})", sum(y)


def check_table(truth: list[dict], runs: list[Run], with_model: bool) -> list[str]:
    from callqa.schemas import CHECK_IDS

    cols = []
    for run in runs:
        if with_model:
            cols += [(f"{run.label} rules", run.rules), (f"{run.label} rules+model", run.pred)]
        else:
            cols.append((f"{run.label} rules", run.pred))
    lines = [
        "| check | viol. | " + " | ".join(c for c, _ in cols) + " |",
        "|---|---:|" + "---:|" * len(cols),
    ]
    macro = {c: [] for c, _ in cols}
    for cid in CHECK_IDS:
        cells, viol = [], 0
        for name, pred in cols:
            cell, viol = f1_cells(truth, pred, cid)
            cells.append(cell)
            if viol:  # macro F1 over the checks with violations (F1 defined in every column)
                macro[name].append(float(cell.split()[0]))
        lines.append(f"| {cid} | {viol} | " + " | ".join(cells) + " |")
    means = [f"{sum(v) / len(v):.3f}" if v else "n/a" for v in macro.values()]
    lines.append("| **macro F1** (checks with violations) | | " + " | ".join(means) + " |")
    return lines


def asr_table(refs: dict[str, list[str]], runs: list[Run]) -> list[str]:
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    norm = EnglishTextNormalizer()

    def wer(role: str, hyps: list[str]) -> str:
        pairs = [(norm(r), norm(h)) for r, h in zip(refs[role], hyps, strict=True) if norm(r)]
        return f"{jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]):.1%}"

    base_wall = runs[0].wall_s / max(runs[0].audio_s, 1e-9)
    lines = [
        "| ASR | WER agent | WER customer | scoring s | x real time | time vs "
        f"{runs[0].label} | loops dropped / cut / left | speech lost agent / customer s "
        f"| holes >= {HOLE_S:.0f} s | lost in dropped loops s "
        "| worst call (lost s, longest hole s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        lost, name, hole = max(run.per_call_lost) if run.per_call_lost else (0.0, "-", 0.0)
        ratio = run.wall_s / max(run.audio_s, 1e-9) / base_wall
        lines.append(
            f"| {run.label} | {wer('agent', run.hyp['agent'])} | "
            f"{wer('customer', run.hyp['customer'])} | {run.wall_s:.0f} | "
            f"{run.audio_s / max(run.wall_s, 1e-9):.1f} | {ratio:.2f}x | "
            f"{run.loops_dropped} / {run.loops_cut} / {run.loops_out} | "
            f"{run.lost['agent']:.1f} / {run.lost['customer']:.1f} | {run.holes} | "
            f"{run.lost_in_loops_s:.1f} | {name} ({lost:.1f}, {hole:.1f}) |"
        )
    return lines


# --------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="stereo calls")
    ap.add_argument("--seed", type=int, default=940000)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--model", type=Path, default=None, help="trained model (default score.model)")
    ap.add_argument("--no-model", action="store_true", help="rules only")
    ap.add_argument(
        "--asr", nargs="+", default=["tiny.en", "base"], choices=list(ASR_MODELS),
        help="ASR models to compare (the first is the time baseline)",
    )  # fmt: skip
    ap.add_argument(
        "--warm-cache", action="store_true",
        help="keep the ASR caches of an earlier run in --workdir (F1 with a model added later; "
        "the timings then measure no ASR)",
    )  # fmt: skip
    args = ap.parse_args()

    from callqa.audio.io import load_audio
    from callqa.audio.prepare import prepare
    from callqa.config import load_params
    from callqa.data import synth

    work = args.workdir or Path(tempfile.mkdtemp(prefix="callqa-asr-choice-"))
    params = load_params(ROOT / "params.yaml")
    model_dir = None if args.no_model else (args.model or params.score.model)
    if model_dir is not None and not Path(model_dir).exists():
        print(f"no trained model at {model_dir}: rules only")
        model_dir = None
    cfg = params.synth.model_copy(update={"seed": args.seed, "phrase_bank": "test"})
    t0 = time.perf_counter()
    synth.run(cfg, params.preprocess.vad, out_dir=work / "calls", n_calls=args.n, progress=False)
    print(f"synth: {args.n} calls in {time.perf_counter() - t0:.0f} s", flush=True)

    # The role speech (Silero VAD, as scoring computes it) once per call, outside the timing.
    calls, refs = [], {r: [] for r in ROLES}
    for wav in sorted((work / "calls").glob("*.wav")):
        sidecar = json.loads(wav.with_suffix(".json").read_text())
        prep = prepare(load_audio(wav), params.preprocess, with_logmel=False)
        calls.append((wav, sidecar, prep.speech))
        for role in ROLES:
            turns = sorted(
                (t for t in sidecar["turns"] if t["role"] == role), key=lambda t: t["start"]
            )
            refs[role].append(" ".join(t["text"] for t in turns))

    runs = []
    for label in args.asr:
        run = score_all(label, ASR_MODELS[label], calls, params, model_dir, work, args.warm_cache)
        print(f"{label}: {run.audio_s:.0f} s audio scored in {run.wall_s:.0f} s", flush=True)
        runs.append(run)
    if any(run.failed for run in runs):
        print("calls that failed are left out of that model's figures: " + ", ".join(
            f"{r.label} {r.failed}" for r in runs))  # fmt: skip
    truth = [s["checks"] for _w, s, _sp in calls]
    if any(len(r.pred) != len(truth) for r in runs):
        sys.exit("a call failed to score: the check tables need every call")
    title = f"{args.n} stereo calls, seed {args.seed}, test phrase bank"
    print(f"\nChecks: F1 (false flags / missed violations), {title}; "
          f"trained model: {model_dir or 'none'}\n")  # fmt: skip
    print("\n".join(check_table(truth, runs, model_dir is not None)))
    print(f"\nASR, {title} (WER: jiwer after whisper_normalizer on both sides)\n")
    print("\n".join(asr_table(refs, runs)))


if __name__ == "__main__":
    sys.exit(main())
