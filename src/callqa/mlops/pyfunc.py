"""The whole scoring pipeline as one MLflow pyfunc model: audio in, `callqa score`'s JSON out.

Logged as models-from-code (`qa_model.py` is the code file; nothing live is pickled). Its
artifacts are everything a Scorer needs besides the installed callqa package and the bundled
models: the params sections that shape scoring, the scorecard, and the trained model directory
(safetensors, config, labels, thresholds) when one ships. `load_context` builds one Scorer
(ASR, VAD, model loaded once); `predict` scores a DataFrame of base64 audio; the server calls
`score_bytes` directly.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from pathlib import Path

import yaml

from callqa.config import Params, parse_params

# the params sections a Scorer reads; the rest (training, paths of stages) does not ship
SCORING_SECTIONS = ("validate", "preprocess", "transcribe", "score")
SCORECARD_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def scoring_params(params: Params) -> dict:
    """The params.yaml sections that shape scoring, as plain data (paths as strings)."""
    data = params.model_dump(mode="json", by_alias=True)
    return {k: data[k] for k in SCORING_SECTIONS}


def artifacts(params: Params, model_dir: Path | None, work: Path) -> dict[str, str]:
    """Files to log with the pyfunc: params snapshot, scorecard, model directory (if any)."""
    work.mkdir(parents=True, exist_ok=True)
    snap = work / "scoring_params.yaml"
    snap.write_text(yaml.safe_dump(scoring_params(params), sort_keys=True), encoding="utf-8")
    card = Path(params.score.scorecard)
    # the scorecard that scores, and its folder's others for `?scorecard=NAME`
    out = {"params": str(snap), "scorecard": str(card), "scorecards": str(card.parent)}
    if model_dir is not None and (Path(model_dir) / "model.safetensors").is_file():
        out["model"] = str(model_dir)
    return out


def build_scorer(paths: dict[str, str]):
    """A Scorer from the logged artifacts (local paths, as `context.artifacts` gives them)."""
    from callqa.pipeline import Scorer

    data = yaml.safe_load(Path(paths["params"]).read_text(encoding="utf-8"))
    data["score"]["scorecard"] = paths["scorecard"]
    data["score"]["model"] = paths.get("model")
    params = parse_params(data, source="logged scoring params")
    return Scorer(params.preprocess, params.transcribe, params.score, params.validate_cfg)


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("string", "audio_b64"), ColSpec("string", "name", required=False)])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("string", "result")]))


class CallqaPipeline:
    """Mixed into mlflow.pyfunc.PythonModel by `qa_model.py` (mlflow stays out of imports)."""

    scorer = None

    def load_context(self, context) -> None:
        paths = dict(context.artifacts)
        self.scorer = build_scorer(paths)
        self.scorecards_dir = Path(paths.get("scorecards", "scorecards"))
        self.scorecards: dict[str, object] = {}

    def score_bytes(self, data: bytes, name: str = "upload", scorecard: str | None = None) -> dict:
        """The QA result of in-memory audio as JSON data; raises AudioError for bad audio."""
        scorer = self.scorer
        if scorecard is not None:
            scorer = self._with_scorecard(scorecard)
        return scorer.score_bytes(data, name).model_dump(mode="json")

    def _with_scorecard(self, name: str):
        """The Scorer with scorecards/NAME.yaml in place of its own (ValueError if unknown)."""
        from callqa.qa.scorecard import Scorecard

        if not SCORECARD_NAME.match(name):
            raise ValueError("scorecard: give a bare name (letters, digits, '-' or '_')")
        if name not in self.scorecards:
            path = self.scorecards_dir / f"{name}.yaml"
            if not path.is_file():
                raise ValueError("scorecard: no scorecard by that name")
            import copy

            clone = copy.copy(self.scorer)
            clone.scorecard = Scorecard.load(path)
            clone.agent_likeness = clone.scorecard.agent_likeness(clone.encoder)
            self.scorecards[name] = clone
        return self.scorecards[name]

    def predict(self, context, model_input, params=None):
        """One JSON string per row: the QA result, or `{"error": {"code", "message"}}`."""
        from callqa.audio.io import AudioError

        out = []
        for i, row in enumerate(model_input.to_dict("records")):
            name = str(row.get("name") or f"row-{i}")
            try:
                data = base64.b64decode(str(row["audio_b64"]), validate=True)
                out.append(json.dumps(self.score_bytes(data, name)))
            except (binascii.Error, ValueError):
                out.append(_error("bad_request", "audio_b64: not valid base64"))
            except AudioError as err:
                out.append(_error(err.code, err.message))
        return out


def _error(code: str, message: str) -> str:
    return json.dumps({"error": {"code": code, "message": message}})
