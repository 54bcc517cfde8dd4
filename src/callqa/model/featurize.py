"""`callqa featurize`: labelled utterances and their model inputs, versioned by DVC.

Writes `out_dir/utterances.parquet` (one row per utterance: ids, source, role, times, ASR text,
script, speaker/voice, sentence ids, split, intent labels, emotion, modality flags) and
`out_dir/arrays.npz` (row-aligned: input_ids, attention_mask, audio, mel, prosody) and
`out_dir/featurize.json` (counts, label balance, licences of the data used).

Rows come from three places (see `model/utterances.py`): synth calls (sidecar turns aligned
to the ASR words of `callqa transcribe`), labelled emotion clips (`emotion_corpora`, speaker-
disjoint splits) and text-only rows from the phrase bank's train split. Splits of synth calls
come from their sidecars (disjoint by voice and by phrase-bank sentence, `callqa synth`); the
`test` bank's calls are test rows only. Audio features are cached per call / clip in the one
cache (`.cache/callqa/featurize/`), so a rerun only computes what is new.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from callqa.config import FeaturizeConfig, PreprocessConfig, SplitConfig
from callqa.files import atomic_path
from callqa.model.features import FeatureExtractor, FeatureSpec
from callqa.model.reviewed import override_synth

logger = logging.getLogger(__name__)

# 2: role speech packed before the encoder; 3: clips in random groups; 4: encoder windows as
# long as their audio, utterances capped at audio_max_s; 5: each utterance its own window;
# 6: frame energies floored 50 dB under a span's loud frames (prosody)
CODE_VERSION = 6
RAVDESS_LICENSE = "CC BY-NC-SA 4.0 (RAVDESS, Livingstone & Russo 2018)"
ARRAYS = ("input_ids", "attention_mask", "audio", "mel", "prosody")


def feature_spec(cfg: FeaturizeConfig) -> FeatureSpec:
    return FeatureSpec(
        cfg.text_encoder,
        cfg.max_tokens,
        cfg.audio_encoder,
        tuple(cfg.mel_shape),
        audio_max_s=cfg.audio_max_s,
        embed_alone=cfg.embed_alone,
        speaker_relative=cfg.speaker_relative,
        level_lufs=cfg.level_lufs,
        clip_speech=cfg.clip_speech,
    )


def _cache(cfg: FeaturizeConfig, pre: PreprocessConfig, extractor: FeatureExtractor):
    from callqa.cache import StageCache, library_versions, weights_id

    spec = feature_spec(cfg)
    return StageCache(
        "featurize",
        CODE_VERSION,
        params={
            "pack_speech": spec.pack_speech,
            "audio_max_s": spec.audio_max_s,
            "embed_alone": spec.embed_alone,
            "level_lufs": spec.level_lufs,
            "clip_speech": spec.clip_speech,
            "audio_encoder": spec.audio_encoder,
            "mel_shape": list(spec.mel_shape),
            "preprocess": pre.model_dump(
                mode="json", exclude={"accepted", "out_dir", "workers", "progress"}
            ),
        },
        model=weights_id(spec.audio_encoder),
        device=extractor.device,
        libraries=library_versions(["torch", "transformers", "torchaudio"]),
    )


def _content(call_id: str, spans) -> str:
    import hashlib

    h = hashlib.sha256(call_id.encode())
    h.update(json.dumps([[r, round(s, 3), round(e, 3), n] for r, s, e, n in spans]).encode())
    return h.hexdigest()


# ------------------------------------------------------------------ synth calls


def synth_call_rows(cfg: FeaturizeConfig, accepted) -> list[tuple[dict, list[dict]]]:
    """(manifest row, utterance rows) for every accepted synth call with a transcript."""
    from callqa.model.utterances import call_rows

    out = []
    missing = 0
    for rec in accepted.to_dict("records"):
        if rec.get("source") != "synth" or not rec.get("labels_json"):
            continue
        tr_path = cfg.transcripts_dir / f"{rec['id']}.json"
        if not tr_path.exists():
            missing += 1
            continue
        sidecar = json.loads(rec["labels_json"])
        transcript = json.loads(tr_path.read_text(encoding="utf-8"))
        rows = call_rows(sidecar, transcript, rec["id"], cfg.min_turn_words)
        if sidecar.get("split") is None:  # sidecars from before splits: use the manifest's
            for r in rows:
                r["split"] = rec.get("split") or "train"
        out.append((rec, rows))
    if missing:
        logger.warning(
            "%d accepted synth calls have no transcript: run `callqa transcribe`", missing
        )
    return out


def _call_arrays(cfg, extractor, cache, call_id: str, rows: list[dict]) -> dict[str, np.ndarray]:
    from callqa.audio.preprocess import load_prepared

    spans = [(r["role"], r["start"], r["end"], r["n_words"]) for r in rows]
    key = _content(call_id, spans)
    hit = cache.get_arrays(key)
    if hit is not None:
        return hit
    prep = load_prepared(cfg.preprocessed_dir / call_id)
    arrays = extractor.call_features(prep, spans)
    cache.put_arrays(key, arrays)
    return arrays


# ------------------------------------------------------------------ emotion clips


def emotion_clip_entries(cfg: FeaturizeConfig) -> tuple[list[dict], list[str]]:
    """Labelled clips of `emotion_corpora` in the label set, with speaker-disjoint splits."""
    from callqa.audio.io import scan_folder
    from callqa.data.labels import assign_splits, map_label, parse_corpus_name

    label_map = _clip_label_map(cfg.emotion_labels)
    entries, licences = [], []
    for folder in cfg.emotion_corpora:
        if not Path(folder).is_dir():
            logger.warning("featurize.emotion_corpora: %s is not a folder; skipped", folder)
            continue
        for path in scan_folder(Path(folder)).audio:
            parsed = parse_corpus_name(path.stem)
            if parsed is None:
                continue
            source, raw, speaker, extras = parsed
            if extras.get("vocal_channel") == "song":
                continue
            label, status = map_label(raw, label_map)
            fine = CORPUS_CODES.get(raw, raw).lower() if cfg.clip_fine_labels else None
            if status != "ok" and not (fine and status == "out_of_scope"):
                continue
            entries.append({"path": str(path), "label": label, "fine": fine, "speaker": speaker})
            if source == "ravdess" and RAVDESS_LICENSE not in licences:
                licences.append(RAVDESS_LICENSE)
    sizes: dict[str, int] = {}
    for e in entries:
        sizes[e["speaker"]] = sizes.get(e["speaker"], 0) + 1
    splits = assign_splits(sizes, SplitConfig(val_share=0.15, test_share=0.15, seed=0))
    for e in entries:
        e["split"] = splits[e["speaker"]]
    return entries, licences


CORPUS_CODES = {"NEU": "neutral", "HAP": "happy", "SAD": "sad", "ANG": "angry",
                "FEA": "fearful", "DIS": "disgust"}  # CREMA-D  # fmt: skip


def _clip_label_map(labels: list[str]) -> dict[str, str | None]:
    """Corpus label -> one of `labels`: itself, calm -> neutral (RAVDESS), CREMA-D codes."""
    m: dict[str, str | None] = {lab: lab for lab in labels}
    if "calm" not in labels and "neutral" in labels:
        m["calm"] = "neutral"
    for code, name in CORPUS_CODES.items():
        m[code] = name if name in labels else None
    for name in ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"):
        m.setdefault(name, None)
    return m


def clip_arrays(
    extractor, cache, paths: list[str], pre: PreprocessConfig, channel: str = "clean",
    batch: int = 8,
):  # fmt: skip
    """Features of whole clips, computed in packed groups of `batch`, cached per clip.

    `channel`: "clean" (the file as it is), "telephone" or "pcm8" (`_heard`).
    """
    from callqa.audio.prepare import prepare

    ids = [clip_id(p, channel) for p in paths]
    got: dict[int, dict] = {}
    todo = []
    for i, cid in enumerate(ids):
        hit = cache.get_arrays(f"clip-{cid}")
        if hit is not None:
            got[i] = hit
        else:
            todo.append(i)
    # Clips share encoder windows with their group: in file order a group would be one emotion
    # (RAVDESS names sort by emotion), and neighbours leak into each other's embedding.
    todo = [todo[k] for k in np.random.default_rng(0).permutation(len(todo))]
    for g in range(0, len(todo), batch):
        group = todo[g : g + batch]
        preps = [prepare(_heard(paths[i], channel), pre, with_logmel=True) for i in group]
        arrays = extractor.clip_features(preps)
        for k, i in enumerate(group):
            one = {name: arrays[name][k : k + 1] for name in ("audio", "mel", "prosody")}
            cache.put_arrays(f"clip-{ids[i]}", one)
            got[i] = one
    return {
        name: np.concatenate([got[i][name] for i in range(len(paths))])
        for name in ("audio", "mel", "prosody")
    }


def clip_id(path: str, channel: str) -> str:
    """A clip's id: its content id, with the channel for every channel but "clean"."""
    from callqa.files import content_id

    return content_id(path) + ("" if channel == "clean" else f"-{channel}")


def _heard(path: str, channel: str):
    """The clip's audio as the channel delivers it (mono, 16 kHz for the others than "clean"):
    "telephone" = a phone line (300-3400 Hz, 8 kHz, mu-law); "pcm8" = an 8 kHz, 8-bit linear
    PCM export (no band filter; quiet speech sits close to its rounding noise)."""
    from callqa.audio.io import Audio, load_audio, resample, to_mono
    from callqa.data.synth_render import SAMPLE_RATE_HZ, TELEPHONE_RATE_HZ, telephone_channel

    audio = load_audio(path)
    if channel == "clean":
        return audio
    x = resample(to_mono(audio.samples), audio.sample_rate_hz, SAMPLE_RATE_HZ)
    if channel == "telephone":
        return Audio(telephone_channel(x)[None, :].astype(np.float32), SAMPLE_RATE_HZ, "ULAW")
    y = resample(x, SAMPLE_RATE_HZ, TELEPHONE_RATE_HZ)
    y = np.clip(np.round(y * 128), -128, 127) / 128  # unsigned 8-bit has 256 levels
    return Audio(resample(y, TELEPHONE_RATE_HZ, SAMPLE_RATE_HZ)[None, :].astype(np.float32),
                 SAMPLE_RATE_HZ, "PCM_U8")  # fmt: skip


# ------------------------------------------------------------------ reviewed calls


def _labels_by_call(cfg: FeaturizeConfig) -> dict[str, dict]:
    from callqa.model.reviewed import load_labels

    labels = load_labels(cfg.review_labels)
    return {} if labels is None else {r["call_id"]: r for r in labels.to_dict("records")}


def _reviewed_calls(reviewed: dict[str, dict], extractor, cache, pre: PreprocessConfig):
    """(arrays, rows) of reviewed calls that are not synth calls and whose audio is on disk."""
    import pandas as pd

    from callqa.audio.io import load_audio
    from callqa.audio.prepare import prepare
    from callqa.model.reviewed import review_rows, review_splits

    if not reviewed:
        return
    splits = review_splits(pd.DataFrame(list(reviewed.values())), SplitConfig())
    missing = 0
    for call_id, label in sorted(reviewed.items()):
        path = label.get("audio_path")
        if not path or not Path(path).is_file():
            missing += 1
            continue
        rows = review_rows(label, splits[call_id])
        if not rows:
            continue
        spans = [(r["role"], r["start"], r["end"], r["n_words"]) for r in rows]
        key = _content(call_id, spans)
        arrays = cache.get_arrays(key)
        if arrays is None:
            prep = prepare(load_audio(path), pre, with_logmel=True)
            arrays = extractor.call_features(prep, spans)
            cache.put_arrays(key, arrays)
        yield arrays, rows
    if missing:
        logger.warning("featurize: %d reviewed calls skipped: their audio is not on disk", missing)


# ------------------------------------------------------------------ text-only rows


def bank_text_rows(cfg: FeaturizeConfig, call_rows_all: list[dict]) -> list[dict]:
    """Text-only rows of the train bank's train split, half with the ASR's word slips."""
    if cfg.text_rows_per_sentence == 0:
        return []
    from callqa.model.bank_text import train_split_rows
    from callqa.model.utterances import asr_confusions

    pairs = [(r["script"], r["text"]) for r in call_rows_all if r["split"] == "train"]
    return train_split_rows(cfg.text_rows_per_sentence, asr_confusions(pairs))


# ------------------------------------------------------------------ the stage


def run(cfg: FeaturizeConfig, pre: PreprocessConfig, progress: bool = True) -> dict:
    """Build utterances.parquet + arrays.npz in `cfg.out_dir`; returns a summary.

    `pre` (params.yaml `preprocess`) conditions the emotion clips as preprocess did the calls.
    """
    import pandas as pd

    from callqa.progress import track

    t0 = time.perf_counter()
    if not cfg.accepted.exists():
        raise FileNotFoundError(f"{cfg.accepted}: not found; run `callqa validate` first")
    accepted = pd.read_parquet(cfg.accepted)
    extractor = FeatureExtractor(feature_spec(cfg), cfg.device)
    cache = _cache(cfg, pre, extractor)

    rows: list[dict] = []
    parts: list[dict[str, np.ndarray]] = []
    calls = synth_call_rows(cfg, accepted)
    reviewed = _labels_by_call(cfg)
    for rec, call in track(calls, "featurize calls", enabled=progress and cfg.progress):
        if not call:
            continue
        if rec["id"] in reviewed:  # people's answers override the synth labels
            override_synth(call, reviewed.pop(rec["id"]))
        parts.append(_call_arrays(cfg, extractor, cache, rec["id"], call))
        rows.extend(call)
    for part, call in _reviewed_calls(reviewed, extractor, cache, pre):
        parts.append(part)
        rows.extend(call)

    entries, licences = emotion_clip_entries(cfg)
    if entries:
        import soundfile as sf

        from callqa.model.utterances import clip_row

        paths = [e["path"] for e in entries]
        durations = [sf.info(p).duration for p in paths]
        for channel in cfg.clip_channels:
            parts.append(clip_arrays(extractor, cache, paths, pre, channel))
            for e, dur in zip(entries, durations, strict=True):
                cid = clip_id(e["path"], channel)
                rows.append(clip_row(cid, e["path"], e["label"], e["speaker"], e["split"], dur,
                                     channel, e["fine"]))  # fmt: skip

    text = bank_text_rows(cfg, rows)
    if text and parts:  # text-only rows: no audio (the model masks it with a learned token)
        n = len(text)
        parts.append({name: np.zeros((n, *parts[0][name].shape[1:]), np.float32)
                      for name in ("audio", "mel", "prosody")})  # fmt: skip
        rows.extend(text)
    if not rows:
        raise ValueError(
            f"no labelled utterances: {cfg.accepted} has no transcribed synth calls and "
            "featurize.emotion_corpora gave no clips"
        )
    arrays = {
        name: np.concatenate([p[name] for p in parts]) for name in ("audio", "mel", "prosody")
    }
    arrays = extractor.with_context(arrays, [speaker_group(r) for r in rows])
    arrays.update(extractor.tokens([r["text"] for r in rows]))
    arrays["audio"] = arrays["audio"].astype(np.float16)
    arrays["mel"] = arrays["mel"].astype(np.float16)

    table = pd.DataFrame(rows)
    if "path" not in table:
        table["path"] = None
    table["reviewed"] = (
        table["reviewed"].fillna(False).astype(bool) if "reviewed" in table else False
    )
    _check_disjoint(table)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "arrays.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    with atomic_path(out / "utterances.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    summary = _summary(table, licences, time.perf_counter() - t0, out)
    summary["feature_spec"] = feature_spec(cfg).as_dict()
    with atomic_path(out / "featurize.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def speaker_group(row: dict) -> str | None:
    """Whose voice a row is, for `features.speaker_relative`: a corpus clip's speaker, a call
    turn's (call, role); None for rows without audio."""
    if not row.get("has_audio"):
        return None
    if row["source"] == "emotion_clip":  # one speaker over one channel
        channel = row.get("channel") or "clean"
        suffix = "" if channel == "clean" else f"/{channel}"
        return f"speaker:{row['speaker']}{suffix}" if row.get("speaker") else None
    return f"{row['call_id']}/{row['role']}"


def _check_disjoint(table) -> None:
    """Voices and bank sentences never cross splits (warn: old sidecars have no split info)."""
    audio = table[table["source"] == "synth"]
    for col in ("speaker", "sentence_ids"):
        seen: dict[str, set] = {}
        for split, values in audio.groupby("split")[col]:
            items = {v for s in values.dropna() for v in str(s).split()}
            seen[split] = items
        for a in seen:
            for b in seen:
                if a < b and seen[a] & seen[b]:
                    logger.warning(
                        "featurize: %d %s value(s) shared by splits %s and %s",
                        len(seen[a] & seen[b]), col, a, b,
                    )  # fmt: skip


def _summary(table, licences: list[str], wall: float, out: Path) -> dict:
    from callqa.config import INTENTS

    by = table.groupby(["source", "split"]).size()
    agent = table[table["has_intents"]]
    fine = table["emotion_fine"].value_counts() if "emotion_fine" in table else {}
    return {
        "rows": int(len(table)),
        "by_source_split": {f"{s}/{p}": int(n) for (s, p), n in by.items()},
        "intent_positives": {i: int(agent[i].sum()) for i in INTENTS},
        "emotions": {str(k): int(v) for k, v in table["emotion"].value_counts().items()},
        "clip_fine_labels": {str(k): int(v) for k, v in fine.items()},
        "reviewed_rows": int(table["reviewed"].sum()),
        "licenses": licences,
        "wall_s": round(wall, 1),
        "out_dir": str(out),
    }
