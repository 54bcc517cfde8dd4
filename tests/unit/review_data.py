"""QA results and a stereo call for the review tests: valid `QAResult` lines (checked against
the pydantic model) whose model checks carry probabilities near or far from the threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from callqa.schemas import CHECK_IDS, QAResult

SR = 16000


def make_result(
    call_id: str,
    *,
    p_greeting: float = 0.9,
    fail: tuple[str, ...] = (),
    model: bool = True,
    path: str = "call.wav",
) -> dict:
    """One result line: `greeting` decided by the model (probability `p_greeting`, threshold
    0.5), the checks in `fail` failed with one evidence item each, the rest passed."""
    checks = []
    for cid in CHECK_IDS:
        passed = cid not in fail
        evidence, detail, score = [], "ok", 1.0 if passed else 0.0
        if cid == "greeting" and model:
            hit = p_greeting >= 0.5
            passed = hit and cid not in fail
            score = 1.0 if passed else 0.0
            detail = (
                f"model: greeting p={p_greeting:.2f} >= threshold 0.50 (model) at 0.4 s"
                if hit
                else f"phrase: no matching phrase; model: no segment with greeting p >= "
                f"threshold 0.50 (model); highest {p_greeting:.2f}"
            )
            if hit:
                evidence = [
                    {
                        "start": 0.4,
                        "end": 1.6,
                        "role": "agent",
                        "text": "hello there",
                        "probability": p_greeting,
                    }
                ]
        elif not passed:
            evidence = [{"start": 3.8, "end": 4.4, "role": "agent", "text": "you idiot"}]
            detail = f"{cid} failed at 3.8 s"
        checks.append(
            {"id": cid, "passed": passed, "score": score, "evidence": evidence, "detail": detail}
        )
    failed = [c for c in checks if c["passed"] is False]
    words = [
        {"word": w, "start": 0.4 + 0.3 * i, "end": 0.6 + 0.3 * i, "probability": 0.9}
        for i, w in enumerate(["hello", "there", "thanks", "for", "calling"])
    ]
    result = {
        "schema_version": 1,
        "call_id": call_id,
        "path": path,
        "duration_s": 6.0,
        "channels": 2,
        "sample_rate_hz": SR,
        "roles_from": "channels",
        "segments": [
            {
                "role": "agent",
                "start": 0.4,
                "end": 1.9,
                "text": "hello there thanks for calling",
                "words": words,
            },
            {"role": "customer", "start": 2.2, "end": 3.4, "text": "hi i have a question"},
            {"role": "agent", "start": 3.6, "end": 5.5, "text": "sure, you idiot, go ahead"},
        ],
        "metrics": {
            "call": {"mutual_silence": [], "overtalk": []},
            "agent": {"talk_s": 3.4},
            "customer": {"talk_s": 1.2},
        },
        "checks": checks,
        "score": round(100.0 * (len(checks) - len(failed)) / len(checks), 1),
        "critical_fail": "forbidden_language" in fail,
        "asr": {"backend": "faster-whisper", "model": "tiny.en"},
        "scorecard": {"path": "scorecards/default.yaml", "sha256": "ab" * 32},
    }
    if model:
        result["model"] = {"path": "models/callqa-qa", "sha256": "cd" * 32}
    return QAResult.model_validate(result).model_dump(mode="json", exclude_none=True)


def write_call(path: Path, seconds: float = 6.0) -> Path:
    """A stereo WAV: a tone burst per channel where the result's segments put speech."""
    t = np.arange(int(seconds * SR)) / SR
    agent = 0.3 * np.sin(2 * np.pi * 220 * t) * ((t > 0.4) & (t < 1.9) | (t > 3.6) & (t < 5.5))
    customer = 0.3 * np.sin(2 * np.pi * 330 * t) * ((t > 2.2) & (t < 3.4))
    sf.write(str(path), np.stack([agent, customer], axis=1).astype(np.float32), SR)
    return path
