"""The multimodal QA model: text transformer + Whisper encoder features + log-mel CNN + prosody.

Inputs per utterance: tokens (text encoder, MiniLM-L6 by default, fine-tuned per `freeze`),
the pooled Whisper encoder embedding (frozen encoder, computed by featurize), a log-mel image
(small CNN) and a prosody vector (MLP). Each branch gives a `hidden`-wide vector; a missing
modality (a text-only row, a clip with no usable text, no audio) is replaced by a learned
token, never zeros. Fusion is concatenation or gated attention over the four branch vectors.
Heads: intents (multi-label, sigmoid) and emotion (softmax over the label map).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

MODALITIES = ("text", "audio", "mel", "prosody")
# Dropout on the linear emotion path's inputs (`ModelSpec.emotion_linear`): 0.5 read the
# RAVDESS early-stopping actor better than the branches' 0.2 (docs/benchmarks.md).
WIDE_DROPOUT = 0.5


@dataclass
class ModelSpec:
    """Everything needed to rebuild the module (saved as config.json beside the weights)."""

    intents: list[str]
    emotions: list[str]
    audio_dim: int
    prosody_dim: int
    mel_shape: tuple[int, int] = (64, 128)
    text_encoder: str = "bundled"
    text_dim: int = 384
    hidden: int = 256
    dropout: float = 0.2
    fusion: str = "gated"  # concat | gated
    freeze: str = "top_k"  # frozen | top_k | full | lora
    top_k_layers: int = 2
    lora_rank: int = 8
    # Extra emotion classes the head learns from a corpus's own labels (RAVDESS's calm,
    # fearful, ...), each with the reported emotion it counts toward (None: toward none).
    emotion_fine: dict[str, str | None] = field(default_factory=dict)
    # A linear path from the standardised audio + prosody vectors straight to the emotion
    # logits, added to the fused head's (a probe inside the model; off in models saved before).
    emotion_linear: bool = False
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["mel_shape"] = list(self.mel_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        return cls(**{**d, "mel_shape": tuple(d["mel_shape"])})


def _mlp(n_in: int, n_out: int, dropout: float) -> nn.Module:
    return nn.Sequential(
        nn.LayerNorm(n_in), nn.Linear(n_in, n_out), nn.GELU(), nn.Dropout(dropout),
        nn.Linear(n_out, n_out),
    )  # fmt: skip


class MelCNN(nn.Module):
    """Three strided conv blocks over the (mels, frames) image, global average pool, projection."""

    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        chans = (1, 16, 32, 64)
        blocks = []
        for a, b in zip(chans, chans[1:], strict=False):
            blocks += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.BatchNorm2d(b), nn.GELU()]
        self.conv = nn.Sequential(*blocks)
        self.proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(chans[-1], hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(x[:, None]).mean(dim=(2, 3)))


def load_text_encoder(spec: ModelSpec) -> nn.Module:
    """The text transformer with the spec's freezing applied (LoRA through peft)."""
    from transformers import AutoModel

    from callqa.text.encoder import resolve_model_path

    enc = AutoModel.from_pretrained(resolve_model_path(spec.text_encoder))
    if spec.freeze == "lora":
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=spec.lora_rank, lora_alpha=2 * spec.lora_rank, lora_dropout=0.05,
                         target_modules=["query", "value"])  # fmt: skip
        return get_peft_model(enc, cfg)
    if spec.freeze in ("frozen", "top_k"):
        for p in enc.parameters():
            p.requires_grad = False
    if spec.freeze == "top_k":
        layers = enc.encoder.layer
        for layer in layers[max(0, len(layers) - spec.top_k_layers) :]:
            for p in layer.parameters():
                p.requires_grad = True
    return enc


class QAModel(nn.Module):
    """Intent and emotion logits from a batch of utterances (see module doc)."""

    def __init__(self, spec: ModelSpec, text_encoder: nn.Module | None = None):
        super().__init__()
        self.spec = spec
        h, p = spec.hidden, spec.dropout
        self.text = text_encoder if text_encoder is not None else load_text_encoder(spec)
        self.text_proj = _mlp(spec.text_dim, h, p)
        self.audio_proj = _mlp(spec.audio_dim, h, p)
        self.mel_cnn = MelCNN(h, p)
        self.prosody_proj = _mlp(spec.prosody_dim, h, p)
        self.missing = nn.Parameter(torch.randn(len(MODALITIES), h) * 0.02)
        if spec.fusion == "gated":
            self.gate = nn.Sequential(nn.Linear(h, h), nn.Tanh(), nn.Linear(h, 1))
            fused = h
        elif spec.fusion == "concat":
            fused = h * len(MODALITIES)
        else:
            raise ValueError(f"fusion must be concat or gated, not {spec.fusion!r}")
        self.trunk = nn.Sequential(
            nn.LayerNorm(fused), nn.Dropout(p), nn.Linear(fused, h), nn.GELU()
        )
        self.intent_head = nn.Linear(h, len(spec.intents))
        n_emotion = len(spec.emotions) + len(spec.emotion_fine)
        self.emotion_head = nn.Linear(h, n_emotion)
        if spec.emotion_linear:
            self.emotion_wide = nn.Sequential(
                nn.Dropout(WIDE_DROPOUT), nn.Linear(spec.audio_dim + spec.prosody_dim, n_emotion)
            )
            nn.init.zeros_(self.emotion_wide[1].weight)
            nn.init.zeros_(self.emotion_wide[1].bias)
        # Per-feature standardisation of the audio and prosody vectors, set from the training
        # rows by `set_input_stats`: the pooled encoder means and stds live on very different
        # scales, and a row-wise layer norm does not fix that (on RAVDESS the emotion branch
        # went from UA 0.32 to 0.62 with it). Identity until set; models saved before it load
        # with the identity (modeldir.load).
        for name, dim in (("audio", spec.audio_dim), ("prosody", spec.prosody_dim)):
            self.register_buffer(f"{name}_shift", torch.zeros(dim))
            self.register_buffer(f"{name}_scale", torch.ones(dim))

    def set_input_stats(self, audio: np.ndarray, prosody: np.ndarray) -> None:
        """Mean and std per feature of the training rows that have audio."""
        for name, x in (("audio", audio), ("prosody", prosody)):
            if len(x) < 2:
                continue
            x = torch.from_numpy(np.asarray(x, dtype=np.float64))
            getattr(self, f"{name}_shift").copy_(x.mean(0))
            getattr(self, f"{name}_scale").copy_(x.std(0).clamp_min(1e-3))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled last hidden state over the attention mask (as MiniLM was trained)."""
        out = self.text(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return _mean_pool(out, attention_mask)

    # -- frozen prefix: with `frozen` / `top_k`, the layers below the trainable ones never
    # change, so training computes their output once per row (`text_prefix`) and each step runs
    # only the top layers (`text_top`); a test checks both paths give the same vectors.

    def prefix_cacheable(self) -> bool:
        return self.spec.freeze in ("frozen", "top_k") and hasattr(self.text, "embeddings")

    def _layers(self) -> tuple[list, list]:
        layers = list(self.text.encoder.layer)
        k = 0 if self.spec.freeze == "frozen" else min(self.spec.top_k_layers, len(layers))
        return layers[: len(layers) - k], layers[len(layers) - k :]

    def _ext_mask(self, mask: torch.Tensor, emb: torch.Tensor):
        return self.text._create_attention_masks(
            attention_mask=mask, encoder_attention_mask=None, embedding_output=emb,
            encoder_hidden_states=None, cache=None,
        )[0]  # fmt: skip

    @torch.no_grad()
    def text_prefix(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Hidden states after the frozen layers (eval mode: no dropout)."""
        h = self.text.embeddings(input_ids=input_ids)
        ext = self._ext_mask(attention_mask, h)
        for layer in self._layers()[0]:
            h = _tensor(layer(h, attention_mask=ext))
        return h

    def text_top(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        ext = self._ext_mask(attention_mask, hidden)
        for layer in self._layers()[1]:
            hidden = _tensor(layer(hidden, attention_mask=ext))
        return _mean_pool(hidden, attention_mask)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """batch: input_ids, attention_mask, audio, mel, prosody, and `present` (n, 4) bool."""
        present = batch["present"]
        n = present.shape[0]
        vecs = []
        t = self.missing[0].expand(n, -1)
        rows = present[:, 0].nonzero().squeeze(1)
        if len(rows):  # the transformer runs only on rows with text, padded to their longest
            mask = batch["attention_mask"][rows]
            width = max(int(mask.sum(1).max()), 1)
            if "text_hidden" in batch:  # training with the frozen prefix computed once
                hid = batch["text_hidden"][rows, :width].to(self.missing.dtype)
                enc = self.text_proj(self.text_top(hid, mask[:, :width]))
            else:
                ids = batch["input_ids"][rows, :width]
                enc = self.text_proj(self.encode_text(ids, mask[:, :width]))
            t = t.clone().to(enc.dtype).index_copy(0, rows, enc)
        vecs.append(t)
        audio = ((batch["audio"] - self.audio_shift) / self.audio_scale).to(batch["audio"].dtype)
        vecs.append(self.audio_proj(audio))
        vecs.append(self.mel_cnn(batch["mel"]))
        prosody = (batch["prosody"] - self.prosody_shift) / self.prosody_scale
        prosody = prosody.to(batch["prosody"].dtype)
        vecs.append(self.prosody_proj(prosody))
        stack = torch.stack(vecs, dim=1)  # (n, 4, h)
        mask = present.unsqueeze(-1)
        stack = torch.where(mask, stack, self.missing.unsqueeze(0).to(stack.dtype))
        if self.spec.fusion == "gated":
            w = torch.softmax(self.gate(stack).squeeze(-1), dim=1)  # (n, 4)
            fused = (w.unsqueeze(-1) * stack).sum(1)
        else:
            fused = stack.flatten(1)
        z = self.trunk(fused)
        emotion = self.emotion_head(z)
        if self.spec.emotion_linear:  # rows without audio get nothing from the linear path
            wide = self.emotion_wide(torch.cat([audio, prosody], dim=1))
            emotion = emotion + wide.to(emotion.dtype) * present[:, 1:2].to(emotion.dtype)
        return self.intent_head(z), emotion


def reported_logits(spec: ModelSpec, logits: torch.Tensor) -> torch.Tensor:
    """Emotion logits over `spec.emotions` from the head's (which may hold fine classes too).

    A fine class adds its probability to the emotion it counts toward (calm to neutral); one
    counting toward none drops out and the rest renormalise: the softmax of the result is the
    head's probabilities, summed per reported emotion and renormalised.
    """
    if not spec.emotion_fine:
        return logits
    k = len(spec.emotions)
    toward = list(spec.emotion_fine.values())
    cols = [[i] + [k + j for j, to in enumerate(toward) if to == e]
            for i, e in enumerate(spec.emotions)]  # fmt: skip
    return torch.stack([torch.logsumexp(logits[:, c], dim=1) for c in cols], dim=1)


def _mean_pool(out: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    m = attention_mask.unsqueeze(-1).to(out.dtype)
    return (out * m).sum(1) / m.sum(1).clamp_min(1.0)


def _tensor(x):
    return x[0] if isinstance(x, tuple) else x


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total
