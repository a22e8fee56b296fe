"""Corpus v2: the flite engine, the ARPAbet lexicon, acoustic conditions and the extra splits."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from s3prl_colld.data.synth import flite
from s3prl_colld.data.synth.arpabet import ARPABET, arpabet_lexicon, require_t2p, to_arpabet
from s3prl_colld.data.synth.augment import (Augmentation, Room, augment, coloured_noise, plan_augmentation, reverberate,
                                      room_impulse_response, telephone)
from s3prl_colld.data.synth import main as synth_main
from s3prl_colld.data.synth.voices import UtteranceSpec

from test_synth import read_keyed, read_tsv, transcripts

SENTENCE = "I followed him at a distance, and then I saw the big red house on the hill."
SR = 16000


def pitch_hz(x: np.ndarray) -> float:
    """Median autocorrelation pitch of the voiced 40 ms frames of ``x``."""
    frame, hop, found = 640, 160, []
    for start in range(0, len(x) - frame, hop):
        w = x[start : start + frame] - x[start : start + frame].mean()
        if np.sqrt(np.mean(w ** 2)) < 0.05:
            continue
        ac = np.correlate(w, w, "full")[frame - 1 :]
        lag = SR // 400 + int(np.argmax(ac[SR // 400 : SR // 60]))
        if ac[lag] > 0.4 * ac[0]:
            found.append(SR / lag)
    return float(np.median(found))


def manifest_of(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------- flite


def test_flite_speakers_vary_speed_and_pitch() -> None:
    exe = flite.require_flite()
    assert set(flite.installed_voices(exe)) == set(flite.VOICES)
    spec = UtteranceSpec(SENTENCE, 100, 100)
    slow_low = flite.synthesize_one(flite.FliteSpeaker(1, "slt", 1.2, 140, 100), spec, exe)
    fast_high = flite.synthesize_one(flite.FliteSpeaker(2, "slt", 0.85, 210, 100), spec, exe)
    assert 1.25 < len(slow_low) / len(fast_high) < 1.6  # 1.2 / 0.85 = 1.41
    assert 1.3 < pitch_hz(fast_high) / pitch_hz(slow_low) < 1.7  # 210 / 140 = 1.5
    # the warp scales pitch (and formants) without changing the speaking rate
    plain = flite.synthesize_one(flite.FliteSpeaker(3, "rms", 1.0, None, 100), spec, exe)
    warped = flite.synthesize_one(flite.FliteSpeaker(4, "rms", 1.0, None, 108), spec, exe)
    assert 1.04 < pitch_hz(warped) / pitch_hz(plain) < 1.12
    assert abs(len(warped) / len(plain) - 1) < 0.05
    for wav in (slow_low, fast_high, plain, warped):
        assert wav.dtype == np.float32 and abs(float(np.abs(wav).max()) - 0.9) < 1e-3


def test_flite_per_utterance_jitter_and_speakers() -> None:
    speaker = flite.FliteSpeaker(1, "awb", 1.0, 120, 104)
    cmd = flite.command(speaker, UtteranceSpec("Hello there.", 104, 110), "flite")
    assert cmd[:3] == ["flite", "-voice", "awb"] and cmd[-4:] == ["-t", "Hello there.", "-o", "/dev/stdout"]
    assert "duration_stretch=1.0000" in cmd  # 1.0 x warp 104 % / rate 104 %
    assert "int_f0_target_mean=126.92" in cmd  # 120 x 110 % / warp 104 %
    speakers = flite.make_speakers(["slt", "rms"], 6, random.Random(0))
    assert [s.voice for s in speakers].count("slt") == 3 and len(set(speakers)) == 6
    assert all(s.f0 is None for s in speakers if s.voice == "rms")
    assert all(s.family == f"flite:{s.voice}" and s.engine == "flite" for s in speakers)


# ---------------------------------------------------------------- ARPAbet lexicon


def test_arpabet_lexicon() -> None:
    exe = require_t2p()
    words = ["a", "the", "hello", "don't", "mr", "st", "colonel", "zzyzx", "à", "première", "distance"]
    lex = arpabet_lexicon(words, exe, workers=2)
    assert lex["a"] == lex["à"] == ["AH"]  # not the letter name EY
    assert lex["the"] == ["DH", "AH"] and lex["hello"] == ["HH", "AH", "L", "OW"]
    assert lex["don't"] == ["D", "OW", "N", "T"] and lex["mr"] == ["M", "IH", "S", "T", "ER"]
    assert lex["distance"] == ["D", "IH", "S", "T", "AH", "N", "S"]
    assert lex["première"][:4] == ["P", "R", "EH", "M"]  # accents removed, then letter-to-sound
    assert set(lex) == set(words) and all(p in ARPABET for ph in lex.values() for p in ph)
    # a batch gives what single words give (the "Mr, St" phrase forces the halving fallback)
    assert all(arpabet_lexicon([w], exe)[w] == lex[w] for w in ["mr", "st", "colonel", "zzyzx"])
    assert to_arpabet("ae1") == ["AE"] and to_arpabet("ax") == ["AH"]
    with pytest.raises(ValueError, match="not ARPAbet"):
        to_arpabet("q")


def test_english_corpus_uses_arpabet_for_every_engine(synth_corpus_en: Path) -> None:
    inventory = (synth_corpus_en / "phones.txt").read_text(encoding="utf-8").split()
    assert set(inventory) <= set(ARPABET) and len(inventory) > 30
    manifest = manifest_of(synth_corpus_en)
    assert manifest["phone_set"] == "arpabet" and manifest["engines"] == ["espeak", "flite"]
    lexicon = read_keyed(synth_corpus_en / "lexicon.txt", "\t")
    engine_of = {(u["split"], u["id"]): u["engine"] for u in manifest["utterances"]}
    for engine in ("espeak", "flite"):
        said = [t for split in ("train", "test_unseen") for uttid, t in transcripts(synth_corpus_en, split).items()
                if engine_of[split, uttid] == engine]
        assert said and all(w in lexicon for t in said for w in t.split())


# ---------------------------------------------------------------- acoustic conditions


def test_augmentation_is_deterministic_and_keeps_length() -> None:
    rng = np.random.default_rng(0)
    clean = (0.5 * np.sin(2 * np.pi * 200 * np.arange(24000) / SR) * (rng.random(24000) > 0.3)).astype(np.float32)
    babble = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (9000, 30000, 16000)]
    rir = np.zeros(4000, dtype=np.float32)
    rir[[40, 300, 1500]] = [1.0, 0.5, 0.2]
    aug = Augmentation(room=0, rt60=0.3, babble=("a", "b", "c"), babble_starts=(0.1, 0.5, 0.9), babble_snr_db=5.0,
                       noise="pink", noise_snr_db=10.0, noise_seed=7, telephone=True)
    first = augment(clean, aug, babble, rir)
    assert first.shape == clean.shape and first.dtype == np.float32
    assert np.array_equal(first, augment(clean, aug, babble, rir))
    other = augment(clean, Augmentation(**{**aug.__dict__, "noise_seed": 8}), babble, rir)
    assert not np.array_equal(first, other)
    assert aug.condition == "reverb+babble+noise+telephone" and abs(float(np.abs(first).max()) - 0.9) < 1e-5
    with pytest.raises(ValueError, match="needs a room"):
        augment(clean, aug, babble, None)
    rooms = [Room(0.5, (5, 4, 3), (1, 1, 1), (3, 2, 1))]
    plans = []
    for _ in range(2):
        rng = random.Random(3)
        plans.append([plan_augmentation(rng, rooms, ["x", "y", "z", "w"]) for _ in range(20)])
    assert plans[0] == plans[1] and len(set(plans[0])) == 20
    assert all(a.condition and set(a.babble) <= {"x", "y", "z", "w"} for a in plans[0])


@pytest.mark.parametrize("colour,slope", [("white", 0.0), ("pink", -1.0), ("brown", -2.0), ("blue", 1.0)])
def test_coloured_noise_spectrum(colour: str, slope: float) -> None:
    noise = coloured_noise(2 ** 16, colour, seed=1)
    assert abs(float(np.mean(noise ** 2)) - 1.0) < 1e-6
    power = np.abs(np.fft.rfft(noise)) ** 2
    f = np.arange(len(power))
    band = (f > 50) & (f < len(power) - 50)
    fitted = np.polyfit(np.log(f[band]), np.log(power[band]), 1)[0]
    assert abs(fitted - slope) < 0.15, fitted


def test_noise_snr_is_the_planned_one() -> None:
    rng = np.random.default_rng(1)
    clean = (rng.standard_normal(32000) * 0.1).astype(np.float32)
    for snr in (0.0, 10.0, 20.0):
        noisy = augment(clean, Augmentation(noise="white", noise_snr_db=snr, noise_seed=3), [], None).astype(np.float64)
        gain = float(noisy @ clean) / float(clean @ clean)  # the output is peak-scaled: undo it
        residual = noisy / gain - clean
        measured = 10 * np.log10(float(np.sum(clean.astype(np.float64) ** 2)) / float(np.sum(residual ** 2)))
        assert abs(measured - snr) < 0.3, (snr, measured)


def _band_power(x: np.ndarray, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return float(spectrum[(f >= lo) & (f < hi)].sum())


def test_telephone_band() -> None:
    x = np.random.default_rng(2).standard_normal(32000)
    y = telephone(x)
    assert y.shape == x.shape
    inside = _band_power(y, 500, 3000) / _band_power(x, 500, 3000)
    assert 0.5 < inside < 1.5
    assert _band_power(y, 4200, 8000) < 1e-3 * _band_power(x, 4200, 8000)
    assert _band_power(y, 0, 150) < 1e-2 * _band_power(x, 0, 150)


def schroeder_rt60(rir: np.ndarray) -> float:
    """RT60 from the -5 to -25 dB decay of the backward-integrated energy (T20 x 3)."""
    energy = np.cumsum(rir[::-1].astype(np.float64) ** 2)[::-1]
    db = 10 * np.log10(energy / energy[0] + 1e-12)
    return 3 * (int(np.argmax(db < -25)) - int(np.argmax(db < -5))) / SR


def test_room_impulse_responses_have_the_planned_rt60_and_keep_alignment() -> None:
    for rt60 in (0.3, 0.6):
        rir = room_impulse_response(Room(rt60, (6.0, 5.0, 3.0), (2.0, 1.5, 1.5), (4.0, 3.0, 1.2)))
        assert 0.65 * rt60 < schroeder_rt60(rir) < 1.4 * rt60
        assert len(rir) < 2 * rt60 * SR and np.abs(rir).max() == 1.0
    x = np.zeros(8000)
    x[1000] = 1.0
    y = reverberate(x, rir)
    assert len(y) == len(x) and int(np.argmax(np.abs(y))) == 1000  # the direct path stays in place


# ---------------------------------------------------------------- splits and manifest


def test_split_layout_noisy_and_unseen(synth_corpus_en: Path) -> None:
    root = synth_corpus_en
    manifest = manifest_of(root)
    records = manifest["utterances"]
    assert {(u["split"], u["id"]) for u in records} == {
        (split, uttid) for split in manifest["splits"] for uttid in transcripts(root, split)}
    assert set(manifest["splits"]) == {"train", "dev", "test", "test_unseen", "dev_noisy", "test_noisy"}
    by = {split: {u["id"]: u for u in records if u["split"] == split} for split in manifest["splits"]}
    # noisy copies: the same utterances as dev/test, every one noisy, the same transcripts
    for noisy, clean in (("dev_noisy", "dev"), ("test_noisy", "test")):
        assert set(by[noisy]) == set(by[clean]) and transcripts(root, noisy) == transcripts(root, clean)
        assert all(u["condition"] != "clean" for u in by[noisy].values())
        assert all(u["condition"] == "clean" and u["clean_path"] is None for u in by[clean].values())
        for u in by[noisy].values():  # babble only from the held-out split itself (no training audio)
            assert set(u["augmentation"].get("babble", [])) <= set(by[clean])
            assert (root / u["clean_path"]).read_bytes() == (root / by[clean][u["id"]]["path"]).read_bytes()
    train_noisy = [u for u in by["train"].values() if u["condition"] != "clean"]
    assert len(train_noisy) == len(by["train"]) // 2
    for u in train_noisy:
        assert set(u["augmentation"].get("babble", [])) <= set(by["train"]) - {u["id"]}
    # the clean audio of every noisy utterance, same file name, same length; nothing else in clean/
    noisy_all = [u for u in records if u["condition"] != "clean"]
    assert sorted(p.relative_to(root).as_posix() for p in (root / "clean").rglob("*.flac")) == sorted(
        u["clean_path"] for u in noisy_all)
    for u in noisy_all:
        assert u["clean_path"] == f"clean/{u['path']}"
        assert sf.info(str(root / u["clean_path"])).frames == sf.info(str(root / u["path"])).frames
        assert u["condition"] == "+".join(
            c for c, key in (("reverb", "room"), ("babble", "babble"), ("noise", "noise"), ("telephone", "telephone"))
            if key in u["augmentation"])
    # test_unseen: one voice family that no other split has
    families = {split: {s["family"] for s in manifest["speakers"][split]} for split in manifest["splits"]}
    assert families["test_unseen"] == {manifest["unseen_family"]} == {"flite:awb"}
    assert all(manifest["unseen_family"] not in families[s] for s in manifest["splits"] if s != "test_unseen")
    # held-out sentences never occur in train
    train_text = set(transcripts(root, "train").values())
    for split in ("dev", "test", "test_unseen"):
        assert not set(transcripts(root, split).values()) & train_text
    for split in manifest["splits"]:
        assert len(read_tsv(root / "covost" / f"{split}.tsv")) == manifest["counts"][split]
        assert (root / "len_for_bucket" / f"{split}.csv").is_file() and (root / split / "phones.txt").is_file()


def test_german_corpus_holds_out_klatt_voices(synth_corpus_de: Path) -> None:
    manifest = manifest_of(synth_corpus_de)
    assert manifest["engines"] == ["espeak"] and manifest["unseen_family"] == "espeak:klatt"
    unseen = manifest["speakers"]["test_unseen"]
    assert unseen and all(s["variant"].startswith("klatt") for s in unseen)
    others = [s for split in ("train", "dev", "test") for s in manifest["speakers"][split]]
    assert not any(s["variant"].startswith("klatt") for s in others)


def test_hours_target(tmp_path: Path) -> None:
    root = tmp_path / "h"
    assert synth_main(["--lang", "en", "--out", str(root), "--hours", "0.01", "--held-out", "2", "--rooms", "0"]) == 0
    manifest = manifest_of(root)
    assert manifest["hours_target"] == 0.01 and 0.008 < manifest["hours"]["train"] < 0.012
    assert manifest["counts"]["dev"] == manifest["counts"]["test"] == 2 and manifest["counts"]["test_unseen"] == 1
    assert not any("room" in (u["augmentation"] or {}) for u in manifest["utterances"])


@pytest.mark.parametrize("args,message", [
    (["--lang", "de", "--engines", "espeak,flite"], "flite has no voice for 'de'"),
    (["--lang", "en", "--engines", "espeak,festival"], "give distinct engines out of espeak, flite"),
    (["--lang", "en", "--unseen", "flite:kal"], "unknown voice family 'flite:kal'"),
    (["--lang", "en", "--hours", "1", "--utterances", "10"], "not both"),
    (["--lang", "en", "--utterances", "10", "--noisy-fraction", "1.5"], "--noisy-fraction must be between 0 and 1"),
    (["--lang", "en", "--utterances", "10", "--snr", "20"], "--snr takes LOW,HIGH"),
])
def test_bad_arguments_say_what_to_do(args: list[str], message: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert synth_main([*args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
