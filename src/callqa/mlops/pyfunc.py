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
import logging
import re
from pathlib import Path

import yaml

from callqa.config import Params, parse_params

logger = logging.getLogger(__name__)

# the params sections a Scorer reads; the rest (training, paths of stages) does not ship
SCORING_SECTIONS = ("validate", "preprocess", "transcribe", "score")
SCORECARD_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # fullmatch: "name\n" is no name
BARE_NAME = "scorecard: give a bare name (at most 64 letters, digits, '-' or '_')"


class UnknownScorecard(ValueError):
    """`?scorecard=NAME` names no scorecard this version can use."""


class BrokenScorecard(ValueError):
    """`?scorecard=NAME` names a scorecard file that does not load (the log says why)."""


class ScorerLoaded:
    """One Scorer, ready to score bytes, with `scorecard=NAME` overrides.

    An override swaps only the scorecard (milliseconds; ASR, encoder and model are shared) and
    keeps the clone. Not thread-safe: the server calls it under its scoring lock.
    """

    def __init__(self, scorer_factory, version: str, scorecards_dir: Path):
        self.version = version
        self.scorer = scorer_factory()
        self.scorecards_dir = Path(scorecards_dir)
        self._by_scorecard: dict = {}
        _warn_broken(self.scorecards_dir)

    def score_bytes(self, data: bytes, name: str, scorecard: str | None = None) -> dict:
        """The QA result as JSON data; raises AudioError or UnknownScorecard."""
        scorer = self.scorer if scorecard is None else self._with_scorecard(scorecard)
        return scorer.score_bytes(data, name).model_dump(mode="json")

    def _with_scorecard(self, name: str):
        import copy

        from callqa.qa.scorecard import Scorecard, ScorecardError

        if not SCORECARD_NAME.fullmatch(name):  # the only client string that reaches a path
            raise UnknownScorecard(BARE_NAME)
        if name not in self._by_scorecard:
            path = self.scorecards_dir / f"{name}.yaml"
            if not path.is_file():
                raise UnknownScorecard("scorecard: no scorecard by that name")
            clone = copy.copy(self.scorer)
            try:
                clone.scorecard = Scorecard.load(path)
            except ScorecardError as err:
                logger.error("scorecard %s does not load: %s", name, err)
                raise BrokenScorecard("scorecard: that scorecard does not load") from None
            clone.agent_likeness = clone.scorecard.agent_likeness(clone.encoder)
            self._by_scorecard[name] = clone
        return self._by_scorecard[name]


def _warn_broken(folder: Path) -> None:
    """Log every scorecard in `folder` that does not load (found at start, not per request)."""
    from callqa.qa.scorecard import Scorecard, ScorecardError

    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            Scorecard.load(path)
        except ScorecardError as err:
            logger.warning("serve.scorecards_dir: %s does not load (requests naming it get "
                           "422 scorecard_invalid): %s", path.name, err)  # fmt: skip


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

    loaded: ScorerLoaded | None = None
    version = "unregistered"  # the registry version, set by whoever loads it by version

    def load_context(self, context) -> None:
        paths = dict(context.artifacts)
        scorecards = paths.get("scorecards", str(Path(paths["scorecard"]).parent))
        self.loaded = ScorerLoaded(lambda: build_scorer(paths), self.version, Path(scorecards))

    @property
    def scorer(self):
        return self.loaded.scorer

    def score_bytes(self, data: bytes, name: str = "upload", scorecard: str | None = None) -> dict:
        """The QA result of in-memory audio as JSON data; raises AudioError for bad audio."""
        return self.loaded.score_bytes(data, name, scorecard)

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
