"""Synthetic calls: real eSpeak speech, labels measured on the rendered audio, deterministic."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import soundfile as sf
import yaml
from conftest import ROOT

from callqa.audio import metrics
from callqa.audio.vad import detect_speech
from callqa.config import SynthConfig, VadConfig, load_params
from callqa.data import phrases, synth, synth_plan, synth_render
from callqa.data.phrases import BANK_NAMES, EMOTIONS, all_sentences, get_bank
from callqa.data.phrases import INTENTS as INTENT_NAMES
from callqa.data.synth_splits import call_split
from callqa.files import content_id

SIDECAR_KEYS = {
    "call_id",
    "seed",
    "sample_rate_hz",
    "channels",
    "channel_roles",
    "duration_s",
    "checks",
    "emotion",
    "agent_speech_rate_wpm",
    "events",
    "turns",
    "planned",
    "bank",
    "split",
}
NONE_FAIL = dict.fromkeys(synth.CHECK_IDS, False)
ALL_FAIL = dict.fromkeys(synth.CHECK_IDS, True)
INTENTS = set(INTENT_NAMES)
SEED = 4242  # no benchmark uses it
VAD = load_params(ROOT / "params.yaml").preprocess.vad  # what `callqa synth` passes


def _read(data: bytes) -> tuple[np.ndarray, int, str]:
    info = sf.info(io.BytesIO(data))
    x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return x.T, sr, info.subtype


@pytest.fixture(scope="module")
def clean_call():
    """One compliant stereo call."""
    return synth.synth_call(SEED, NONE_FAIL, SynthConfig(), VAD)


@pytest.fixture(scope="module")
def bad_call():
    """One stereo call planned with every failure."""
    return synth.synth_call(SEED + 1, ALL_FAIL, SynthConfig(), VAD)


# ---------------------------------------------------------------------------------- pure parts


def test_espeak_utterance_does_not_depend_on_history():
    engine = synth_render._engine()
    say = dict(voice="en-us+f2", rate=160, volume=100, pitch=50, pitch_range=50, seed=7)
    first = engine.synth("She sells sea shells by the shore.", **say)
    engine.synth("Something else entirely, to move the engine's state.", **{**say, "rate": 230})
    again = engine.synth("She sells sea shells by the shore.", **say)
    assert first.size > engine.sample_rate_hz  # over a second of real speech
    assert np.array_equal(first, again)


def test_failure_plan_is_balanced_and_prefix_stable():
    cfg = SynthConfig(seed=3)
    plans = synth.failure_plan(cfg, 40)
    for check in synth.CHECK_IDS:
        share = sum(p[check] for p in plans) / 40
        assert 0.25 <= share <= 0.5, (check, share)
    assert synth.failure_plan(cfg, 20) == plans[:20]
    assert synth.call_seeds(3, 5) == synth.call_seeds(3, 40)[:5]
    assert synth.failure_plan(SynthConfig(seed=4), 40) != plans
    off = SynthConfig(**{f: 0.0 for f in synth_plan.FAILURE_P.values()})
    assert not any(any(p.values()) for p in synth.failure_plan(off, 40))


def test_plan_follows_planned_failures():
    bank = get_bank("train")
    good = synth.plan_call(11, NONE_FAIL, bank)
    bad = synth.plan_call(11, ALL_FAIL, bank)
    kinds = lambda plan: {k for ln in plan.lines if ln.role == "agent" for k, _ in ln.parts}  # noqa: E731
    assert {"greeting", "identity", "disclosure", "closing"} <= kinds(good)
    assert "forbidden" not in kinds(good)
    assert not {"greeting", "identity", "disclosure", "closing"} & kinds(bad)
    assert "forbidden" in kinds(bad)
    assert any(ln.interrupt for ln in bad.lines) and not any(ln.interrupt for ln in good.lines)
    assert bad.target_wpm >= 220 and 120 <= good.target_wpm <= 165
    assert plan_texts(synth.plan_call(11, NONE_FAIL, bank)) == plan_texts(good)  # pure
    assert plan_texts(synth.plan_call(12, NONE_FAIL, bank)) != plan_texts(good)


def test_agent_tone_does_not_give_away_rude_lines():
    # An angry agent voice came with rude lines only: the model learned the voice as the label.
    bank = get_bank("train")
    fails = {**NONE_FAIL, "forbidden_language": True}
    rude = [synth.plan_call(s, fails, bank).emotion["agent"] for s in range(120)]
    clean = [synth.plan_call(s, NONE_FAIL, bank).emotion["agent"] for s in range(120)]
    for tones in (rude, clean):
        assert set(tones) == {"angry", "happy", "neutral"}
        assert 0.05 <= tones.count("angry") / len(tones) <= 0.3, tones.count("angry")
    assert abs(rude.count("angry") - clean.count("angry")) <= 12


def plan_texts(plan) -> list[str]:
    return [ln.text for ln in plan.lines]


def test_who_speaks_first_is_random_per_call():
    bank = get_bank("test")
    firsts = [synth.plan_call(seed, NONE_FAIL, bank).lines[0].role for seed in range(40)]
    assert 10 <= firsts.count("customer") <= 30, firsts
    for seed in range(40):
        plan = synth.plan_call(seed, NONE_FAIL, bank)
        agent_lines = [ln for ln in plan.lines if ln.role == "agent"]
        assert agent_lines[0].parts[0][0] == "greeting"  # the agent's first words greet
        assert plan.lines[0].role != plan.lines[1].role


def test_phrase_banks_load_from_package_data_and_are_disjoint():
    banks = {name: get_bank(name) for name in BANK_NAMES}
    assert set(banks) == {"train", "dev", "test", "test2", "test3"}
    for name, bank in banks.items():
        assert bank.name == name and get_bank(name) is bank  # read once
        assert len(bank.greetings) >= 8 and len(bank.closings) >= 8
        assert len(bank.identity) >= 8 and len(bank.disclosures) >= 8
        assert len(bank.forbidden) >= 10 and len(bank.topics) >= 6
        assert set(bank.opener) == set(EMOTIONS) == set(bank.reaction)
        assert not re_digits(all_sentences(bank)), "spell numbers out for eSpeak and word counts"
    long = {n: {s for s in all_sentences(b) if len(s.split()) >= 3} for n, b in banks.items()}
    pairs = [(a, b) for i, a in enumerate(banks) for b in list(banks)[i + 1 :]]
    for a, b in pairs:
        # Counts only: held-out sentences are never printed.
        assert not long[a] & long[b], (a, b, len(long[a] & long[b]))
        for names in ("companies", "agent_names", "customer_names"):
            assert not set(getattr(banks[a], names)) & set(getattr(banks[b], names)), names
    # The files ship inside the package, and the test bank says what it is.
    header = (phrases.resources.files(phrases.banks) / "test.yaml").read_text()
    assert "TEST SET" in header and "2026-12-02" in header and "Never read it for tuning" in header
    header2 = (phrases.resources.files(phrases.banks) / "test2.yaml").read_text()
    assert "TEST SET" in header2 and "2026-12-03" in header2 and "never tune on it" in header2
    header3 = (phrases.resources.files(phrases.banks) / "test3.yaml").read_text()
    assert "TEST SET" in header3 and "2026-12-03" in header3 and "never tune on it" in header3
    assert "never read by the developer" in header3 and "numbers only" in header3
    with pytest.raises(ValueError, match="unknown phrase bank 'heldout'"):
        get_bank("heldout")
    raw = yaml.safe_load((ROOT / "src/callqa/data/banks/dev.yaml").read_text())
    with pytest.raises(ValueError, match="missing \\['topics'\\]"):
        phrases._parse("broken", {k: v for k, v in raw.items() if k != "topics"}, "broken.yaml")


def re_digits(sentences: list[str]) -> list[str]:
    return [s for s in sentences if any(c.isdigit() for c in s)]


def test_compute_labels_uses_contract_definitions():
    turns = [
        {"role": "agent", "start": 0.5, "kinds": ["greeting", "disclosure"]},
        {"role": "customer", "start": 5.0, "kinds": ["body"]},
        {"role": "agent", "start": 30.0, "kinds": ["identity", "forbidden"]},
        {"role": "agent", "start": 70.0, "kinds": ["closing"]},
    ]
    activity = {
        # agent talks over the customer at 6.0-7.2 (1.2 s, agent started later)
        "agent": [(0.5, 4.0), (6.0, 9.0), (30.0, 40.0), (70.0, 75.0)],
        "customer": [(4.2, 7.2), (10.0, 24.5), (40.2, 69.5)],
    }
    checks, events, wpm = synth.compute_labels(activity, turns, 76.0, 60)
    assert checks["greeting"] and checks["identity_verification"]
    assert checks["recording_disclosure"] and checks["closing"]
    assert not checks["forbidden_language"]
    assert not checks["dead_air"]  # 24.5 -> 30.0 is 5.5 s of mutual silence
    assert not checks["overtalk"]
    assert wpm == pytest.approx(60 * 60 / 21.5) and checks["agent_speech_rate"]
    assert {"type": "dead_air", "start": 24.5, "end": 30.0, "by": None} in events
    assert any(e["type"] == "overtalk" and e["by"] == "agent" for e in events)
    # Customer overlap, a 5.0 s silence, a late greeting and an early closing all differ.
    activity = {"agent": [(0.0, 3.0), (8.0, 20.0)], "customer": [(2.0, 3.0)]}
    turns = [
        {"role": "agent", "start": 16.0, "kinds": ["greeting"]},
        {"role": "agent", "start": 8.0, "kinds": ["closing"]},
    ]
    checks, events, wpm = synth.compute_labels(activity, turns, 60.0, 70)
    assert checks["dead_air"] and checks["overtalk"]  # exactly 5.0 s passes; customer's 1.0 s
    assert not checks["greeting"] and not checks["closing"]
    assert wpm == pytest.approx(280.0) and not checks["agent_speech_rate"]
    assert [e["by"] for e in events] == ["customer"]


# ------------------------------------------------------------------------------ rendered calls


def _check_sidecar(data: bytes, sc: dict) -> None:
    assert set(sc) == SIDECAR_KEYS
    assert list(sc["checks"]) == list(synth.CHECK_IDS)
    assert all(isinstance(v, bool) for v in sc["checks"].values())
    assert sc["emotion"]["customer"] in EMOTIONS and sc["emotion"]["agent"] in EMOTIONS
    x, sr, _ = _read(data)
    assert sc["sample_rate_hz"] == sr and sc["channels"] == x.shape[0]
    assert sc["duration_s"] == pytest.approx(x.shape[1] / sr, abs=1e-3)
    assert 25.0 <= sc["duration_s"] <= 110.0
    assert len(sc["turns"]) >= 8 and {t["role"] for t in sc["turns"]} == {"agent", "customer"}
    starts = [t["start"] for t in sc["turns"]]
    assert starts == sorted(starts) and all(t["end"] > t["start"] for t in sc["turns"])
    assert all(t["end"] <= sc["duration_s"] and t["text"] for t in sc["turns"])
    assert sc["bank"] in BANK_NAMES and sc["split"] in ("train", "val", "test")
    for t in sc["turns"]:
        assert t["voice"] and len(t["sentence_ids"]) >= 1
        assert all(":" in sid for sid in t["sentence_ids"])
        assert t["intents"] == [] if t["role"] == "customer" else set(t["intents"]) <= INTENTS
    said = {i for t in sc["turns"] for i in t["intents"]}
    assert all(sc["checks"][i] == (i in said) for i in INTENTS if i != "forbidden_language")
    assert sc["checks"]["forbidden_language"] == ("forbidden_language" not in said)
    for ev in sc["events"]:
        assert ev["type"] in ("dead_air", "overtalk") and ev["end"] > ev["start"]
        assert ev["by"] in (None, "agent", "customer")
    planned = sc["planned"]
    assert set(planned) == {"dead_air_s", "overtalk_s", "agent_rate_wpm"}
    # >= 4: an all-failure call has no identity exchange or closing pair, and a long one loses
    # its optional lines.
    assert all(g > 0 for g in planned["dead_air_s"]) and len(planned["dead_air_s"]) >= 4
    assert all(o >= 0 for o in planned["overtalk_s"])
    assert isinstance(planned["agent_rate_wpm"], float)
    json.dumps(sc, allow_nan=False)


def _activity_from_file(data: bytes) -> dict:
    x, sr, _ = _read(data)
    return {role: detect_speech(x[c], sr) for c, role in enumerate(("agent", "customer"))}


def test_compliant_call_is_measured_compliant(clean_call):
    data, sc = clean_call
    _check_sidecar(data, sc)
    assert sc["channel_roles"] == ["agent", "customer"] and sc["sample_rate_hz"] == 16000
    assert all(sc["checks"].values()), sc["checks"]
    assert sc["events"] == []
    assert 120 <= sc["agent_speech_rate_wpm"] <= 165
    # Independently, from the written file: no dead air, no agent overtalk, rate in bounds.
    act = _activity_from_file(data)
    assert max(e - s for s, e in metrics.mutual_silence(act)) <= 3.5
    agent_ot = [e["end"] - e["start"] for e in metrics.overtalk(act) if e["by"] == "agent"]
    assert max(agent_ot, default=0.0) <= 0.5
    words = sum(len(t["text"].split()) for t in sc["turns"] if t["role"] == "agent")
    assert metrics.speech_rate_wpm(words, act["agent"]) == pytest.approx(
        sc["agent_speech_rate_wpm"], rel=0.03
    )


def test_failing_call_is_measured_failing(bad_call):
    data, sc = bad_call
    _check_sidecar(data, sc)
    assert not any(sc["checks"].values()), sc["checks"]
    assert sc["agent_speech_rate_wpm"] >= 215
    act = _activity_from_file(data)
    gaps = metrics.mutual_silence(act)
    assert max(e - s for s, e in gaps) >= 6.0  # dead air rendered >= 6.5 s, measured > 5 s
    agent_ot = [e["end"] - e["start"] for e in metrics.overtalk(act) if e["by"] == "agent"]
    assert max(agent_ot) >= 1.4
    types = {e["type"] for e in sc["events"]}
    assert types == {"dead_air", "overtalk"}
    dead = next(e for e in sc["events"] if e["type"] == "dead_air")
    assert any(abs(s - dead["start"]) < 0.2 and abs(e - dead["end"]) < 0.2 for s, e in gaps)
    texts = " ".join(t["text"] for t in sc["turns"] if t["role"] == "agent")
    assert any(f in texts for f in get_bank("train").forbidden)


def test_planned_values_agree_with_measured_labels(clean_call, bad_call):
    _, good = clean_call
    assert max(good["planned"]["dead_air_s"]) <= 3.0 and good["planned"]["overtalk_s"] == []
    assert 128 <= good["planned"]["agent_rate_wpm"] <= 158
    assert abs(good["planned"]["agent_rate_wpm"] - good["agent_speech_rate_wpm"]) <= 20
    _, bad = bad_call
    longest = max(bad["planned"]["dead_air_s"])
    assert 6.5 <= longest <= 9.0
    dead = [e["end"] - e["start"] for e in bad["events"] if e["type"] == "dead_air"]
    assert dead and max(dead) == pytest.approx(longest, abs=0.5)  # trimming and VAD padding
    (aimed,) = bad["planned"]["overtalk_s"]
    over = [e["end"] - e["start"] for e in bad["events"] if e["by"] == "agent"]
    assert aimed >= 1.5 and over and max(over) == pytest.approx(aimed, abs=0.5)
    assert bad["planned"]["agent_rate_wpm"] >= 220 and bad["agent_speech_rate_wpm"] >= 215


def test_labels_use_the_vad_settings_passed_in(clean_call):
    _, sc = clean_call
    wide = VadConfig(speech_pad_ms=250)
    data, padded = synth.synth_call(SEED, NONE_FAIL, SynthConfig(), wide)
    # Same script; the agent is calibrated and measured with the wider segments.
    assert [t["text"] for t in padded["turns"]] == [t["text"] for t in sc["turns"]]
    assert padded["turns"] != sc["turns"]
    x, sr, _ = _read(data)
    words = sum(len(t["text"].split()) for t in padded["turns"] if t["role"] == "agent")
    wide_wpm = metrics.speech_rate_wpm(words, detect_speech(x[0], sr, wide))
    default_wpm = metrics.speech_rate_wpm(words, detect_speech(x[0], sr, VAD))
    assert padded["agent_speech_rate_wpm"] == pytest.approx(wide_wpm, rel=0.02)
    assert abs(default_wpm - wide_wpm) > 0.04 * wide_wpm


def test_synth_command_passes_the_params_vad(tmp_path):
    from typer.testing import CliRunner

    from callqa.cli import app

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["preprocess"]["vad"]["speech_pad_ms"] = 250
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "calls"
    args = ["synth", "-n", "1", "--out", str(out), "--seed", "77", "--workers", "1"]
    res = CliRunner().invoke(app, [*args, "--params", str(tmp_path / "params.yaml")])
    assert res.exit_code == 0, res.output
    sc = json.loads((out / "call_00000.json").read_text())
    failures = synth.failure_plan(SynthConfig(seed=77), 1)[0]
    seed = synth.call_seeds(77, 1)[0]
    split = call_split(SynthConfig(), 0)  # call 0 of a train-bank corpus is a test call
    assert sc["split"] == split == "test" and sc["bank"] == "test"
    _, expected = synth.synth_call(
        seed, failures, SynthConfig(), VadConfig(speech_pad_ms=250), split
    )
    _, default = synth.synth_call(seed, failures, SynthConfig(), VAD, split)
    assert sc == expected
    assert sc["agent_speech_rate_wpm"] != default["agent_speech_rate_wpm"]


def test_mono_telephone_noisy_variant_keeps_script_and_labels(clean_call):
    data, sc = clean_call
    cfg = SynthConfig(channels="mono", telephone=True, snr_db=10.0)
    tel_data, tel = synth.synth_call(SEED, NONE_FAIL, cfg, VAD)
    _check_sidecar(tel_data, tel)
    x, sr, subtype = _read(tel_data)
    assert (sr, x.shape[0], subtype) == (8000, 1, "ULAW")
    assert tel["channel_roles"] is None and tel["channels"] == 1
    assert tel["turns"] == sc["turns"] and tel["checks"] == sc["checks"]
    assert tel["call_id"] == content_id_bytes(tel_data) != sc["call_id"]
    # Nothing above the telephone band survives (8 kHz file: up to 4 kHz exists).
    spec = np.abs(np.fft.rfft(x[0])) ** 2
    f = np.fft.rfftfreq(x.shape[1], 1 / sr)
    assert spec[f > 3800].sum() < 1e-3 * spec.sum() and spec[f < 150].sum() < 1e-3 * spec.sum()


def test_noise_is_added_at_the_requested_snr(clean_call):
    data, sc = clean_call
    noisy_data, noisy = synth.synth_call(SEED, NONE_FAIL, SynthConfig(snr_db=5.0), VAD)
    assert noisy["checks"] == sc["checks"] and noisy["turns"] == sc["turns"]
    clean, sr, _ = _read(data)
    x, _, _ = _read(noisy_data)
    noise = x - clean
    for c, role in enumerate(("agent", "customer")):
        speech = detect_speech(clean[c], sr)
        ps = np.mean(np.concatenate([clean[c][int(s * sr) : int(e * sr)] for s, e in speech]) ** 2)
        snr = 10 * math.log10(ps / np.mean(noise[c] ** 2))
        assert snr == pytest.approx(5.0, abs=1.0), role
    # Noise fills the pauses too: the quietest 10% of 20 ms frames are far from silent.
    frames = x[0][: x.shape[1] // 320 * 320].reshape(-1, 320)
    assert np.percentile(np.mean(frames**2, axis=1), 10) > 1e-5


def test_noise_kinds_have_their_spectra():
    rng = np.random.default_rng(0)
    speech = [np.sin(np.linspace(0, 400, 8000)).astype(np.float32)]
    f = np.fft.rfftfreq(32000, 1 / 16000)
    low = {}
    for kind in synth_plan.NOISE_KINDS:
        x = synth_render.make_noise(kind, 32000, rng, speech)
        assert x.dtype == np.float32 and np.mean(x**2) == pytest.approx(1.0, rel=1e-3)
        p = np.abs(np.fft.rfft(x)) ** 2
        low[kind] = p[f < 500].sum() / p.sum()
    assert low["brown"] > low["pink"] > low["white"]
    assert low["hum"] > 0.9
    with pytest.raises(ValueError, match="unknown noise kind"):
        synth_render.make_noise("rain", 100, rng, speech)


def content_id_bytes(data: bytes) -> str:
    from callqa.files import bytes_id

    return bytes_id(data)


@pytest.mark.slow
def test_run_is_deterministic_across_worker_counts(tmp_path):
    cfg = SynthConfig(seed=SEED)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "call_00007.json").write_text("{}")  # stale file from a bigger run
    one = synth.run(cfg.model_copy(update={"workers": 1}), VAD, tmp_path / "a", 2, progress=False)
    two = synth.run(cfg.model_copy(update={"workers": 2}), VAD, tmp_path / "b", 2, progress=False)
    assert one["n_calls"] == two["n_calls"] == 2 and one["plan_mismatches"] == 0
    assert one["violations"] == two["violations"]
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["call_00000.json", "call_00000.wav", "call_00001.json", "call_00001.wav"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    sc = json.loads((tmp_path / "a" / "call_00001.json").read_text())
    assert sc["call_id"] == content_id(tmp_path / "a" / "call_00001.wav")
    assert sc["seed"] == synth.call_seeds(SEED, 2)[1]


def test_telephone_channel_keeps_the_voice_band_and_drops_the_rest():
    sr = 16000
    t = np.arange(sr) / sr
    voice, hiss = 0.3 * np.sin(2 * np.pi * 1000 * t), 0.3 * np.sin(2 * np.pi * 6000 * t)
    out = synth_render.telephone_channel((voice + hiss).astype(np.float32), sr)
    assert out.shape == t.shape and out.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(out[2000:-2000]))
    freqs = np.fft.rfftfreq(out[2000:-2000].size, 1 / sr)
    at = {f: spectrum[np.argmin(np.abs(freqs - f))] for f in (1000, 6000)}
    assert at[6000] < 0.01 * at[1000]  # above 3.4 kHz: gone (8 kHz line)
    kept = out[2000:-2000] @ voice[2000:-2000] / (voice[2000:-2000] @ voice[2000:-2000])
    assert 0.9 < kept < 1.1  # the voice band passes at its level (mu-law adds only noise)
    assert not np.allclose(out, voice, atol=1e-3)  # 8-bit mu-law: quantised
