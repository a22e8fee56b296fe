"""The synthetic corpus (layout, consistency, determinism, errors), length tables and audio I/O."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from s3prl_colld.data.audio import AudioError, load_audio
from s3prl_colld.data.lengths import main as lengths_main
from s3prl_colld.data.synth.phonemes import clean_phones
from s3prl_colld.data.synth.sentences import is_plain_sentence, load_sentence_pairs, normalise_transcript, pairs_from_line
from s3prl_colld.data.synth import SPLITS
from s3prl_colld.data.synth import main as synth_main

from conftest import REPO_ROOT, make_corpus

UTT_RE = re.compile(r"^(\d+)-(\d+)-(\d{4})$")


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def read_keyed(path: Path, sep: str | None = None) -> dict[str, str]:
    """``first field -> rest`` of each line."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, rest = line.partition(sep or " ")
        out[key] = rest
    return out


def transcripts(root: Path, split: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for trans in (root / split).rglob("*.trans.txt"):
        out.update(read_keyed(trans))
    return out


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except the manifest (which records the command line)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def run_cli(args: list[str], env_path: str | None = None) -> subprocess.CompletedProcess:
    """The synth CLI in a fresh interpreter (optionally with another PATH)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    if env_path is not None:
        env["PATH"] = env_path
    return subprocess.run([sys.executable, "-m", "s3prl_colld.data.synth", *args], capture_output=True,
                          text=True, env=env, timeout=120)


# ---------------------------------------------------------------- corpus layout and content


@pytest.mark.parametrize("lang", ["en", "de"])
def test_layout(lang: str, request: pytest.FixtureRequest) -> None:
    root: Path = request.getfixturevalue(f"synth_corpus_{lang}")
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["lang"] == lang and manifest["seed"] == 0
    for name in ("lexicon.txt", "phones.txt", "covost", "len_for_bucket"):
        assert (root / name).exists(), name
    for split in SPLITS:
        flacs = sorted((root / split).rglob("*.flac"))
        assert len(flacs) == manifest["counts"][split] > 0
        assert manifest["hours"][split] > 0
        trans = transcripts(root, split)
        assert sorted(trans) == sorted(p.stem for p in flacs)
        for flac in flacs:
            spk, chapter, _ = UTT_RE.match(flac.stem).groups()
            assert flac.parent == root / split / spk / chapter
            assert (flac.parent / f"{spk}-{chapter}.trans.txt").is_file()
        letters = "A-Z" if lang == "en" else "A-ZÄÖÜ"
        assert all(re.fullmatch(rf"[{letters}']+( [{letters}']+)*", t) for t in trans.values())


def test_speakers_disjoint_and_in_manifest(synth_corpus_en: Path) -> None:
    manifest = json.loads((synth_corpus_en / "manifest.json").read_text(encoding="utf-8"))
    dirs = {split: {p.name for p in (synth_corpus_en / split).iterdir() if p.is_dir()} for split in SPLITS}
    base = ("train", "dev", "test", "test_unseen")
    for i, a in enumerate(base):
        for b in base[i + 1 :]:
            assert not dirs[a] & dirs[b], (a, b)
    assert dirs["dev_noisy"] == dirs["dev"] and dirs["test_noisy"] == dirs["test"]
    keys = {"espeak": {"speaker_id", "engine", "family", "voice", "variant", "speed", "pitch"},
            "flite": {"speaker_id", "engine", "family", "voice", "stretch", "f0", "warp"}}
    for split in SPLITS:
        listed = manifest["speakers"][split]
        assert {str(s["speaker_id"]) for s in listed} == dirs[split]
        assert all(set(s) == keys[s["engine"]] for s in listed)
    # default --speakers 96: 72/12/12, engines taking turns; 6 utterances of the unseen family (5 % of 120)
    assert (len(dirs["train"]), len(dirs["dev"]), len(dirs["test"]), len(dirs["test_unseen"])) == (72, 12, 12, 6)
    for split in ("train", "dev", "test"):
        engines = [s["engine"] for s in manifest["speakers"][split]]
        assert engines.count("espeak") == engines.count("flite") == len(engines) // 2
    espeak = [(s["voice"], s["variant"]) for split in base for s in manifest["speakers"][split] if s["engine"] == "espeak"]
    assert len(set(espeak)) == len(espeak)
    held_variants = {s["variant"] for split in ("dev", "test") for s in manifest["speakers"][split] if s["engine"] == "espeak"}
    assert not held_variants & {s["variant"] for s in manifest["speakers"]["train"] if s["engine"] == "espeak"}


@pytest.mark.parametrize("lang", ["en", "de"])
def test_lexicon_covers_transcripts_and_phone_transcripts_match(lang: str, request: pytest.FixtureRequest) -> None:
    root: Path = request.getfixturevalue(f"synth_corpus_{lang}")
    lexicon = {w: p.split(" ") for w, p in read_keyed(root / "lexicon.txt", "\t").items()}
    inventory = (root / "phones.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert inventory == sorted({p for ph in lexicon.values() for p in ph})
    assert not any(c in "".join(inventory) for c in "ˈˌ_()?") and all(inventory)
    for split in SPLITS:
        phones = read_keyed(root / split / "phones.txt")
        trans = transcripts(root, split)
        assert sorted(phones) == sorted(trans)
        for uttid, text in trans.items():
            assert all(w in lexicon for w in text.split()), text
            assert phones[uttid].split(" ") == [p for w in text.split() for p in lexicon[w]]


@pytest.mark.parametrize("lang", ["en", "de"])
def test_covost_tsv(lang: str, request: pytest.FixtureRequest) -> None:
    root: Path = request.getfixturevalue(f"synth_corpus_{lang}")
    for split in SPLITS:
        path = root / "covost" / f"{split}.tsv"
        assert path.read_text(encoding="utf-8").split("\n")[0] == "id\taudio\tn_frames\tsr\tsrc_text\ttgt_text"
        rows = read_tsv(path)
        trans = transcripts(root, split)
        assert sorted(r["id"] for r in rows) == sorted(trans)
        for row in rows:
            info = sf.info(str(root / row["audio"]))
            assert int(row["n_frames"]) == info.frames and row["sr"] == "16000"
            assert normalise_transcript(row["src_text"]) == trans[row["id"]]
            assert row["src_text"][-1] in ".!?" and row["tgt_text"][-1] in ".!?"
    pairs = {p.side(lang): p.side("de" if lang == "en" else "en") for p in load_sentence_pairs()}
    assert all(pairs[r["src_text"]] == r["tgt_text"] for r in read_tsv(root / "covost" / "train.tsv"))


def test_len_for_bucket(synth_corpus_en: Path, tmp_path: Path) -> None:
    for split in SPLITS:
        path = synth_corpus_en / "len_for_bucket" / f"{split}.csv"
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["", "file_path", "length", "label"]
        body = rows[1:]
        assert [int(r[0]) for r in body] == list(range(len(body)))
        lengths = [int(r[2]) for r in body]
        assert lengths == sorted(lengths, reverse=True)
        tsv = {r["audio"]: int(r["n_frames"]) for r in read_tsv(synth_corpus_en / "covost" / f"{split}.tsv")}
        assert {r[1]: int(r[2]) for r in body} == tsv
        trans = transcripts(synth_corpus_en, split)
        assert all(r[3] == trans[Path(r[1]).stem] for r in body)
        # the standalone tool gives the same table for the same folders
        assert lengths_main(["--root", str(synth_corpus_en), "--split", split, "--out", str(tmp_path)]) == 0
        assert (tmp_path / f"{split}.csv").read_bytes() == path.read_bytes()


def test_audio_is_16k_mono_pcm16_speech(synth_corpus_en: Path) -> None:
    flacs = sorted(synth_corpus_en.rglob("*.flac"))
    for flac in flacs:
        info = sf.info(str(flac))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "FLAC")
    for flac in flacs[::10]:
        wav = load_audio(flac)
        assert wav.dtype == torch.float32 and wav.dim() == 1
        assert 0.85 < wav.abs().max() < 0.95 and wav.pow(2).mean().sqrt() > 0.02
        assert 0.5 < wav.numel() / 16000 < 15


FAST_ROOMS = ["--rt60", "0.2,0.4"]  # short impulse responses: quick to compute


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = tree_hashes(make_corpus(tmp_path / "a", "en", 12, seed=3, extra=FAST_ROOMS))
    b = tree_hashes(make_corpus(tmp_path / "b", "en", 12, seed=3, extra=FAST_ROOMS))
    c = tree_hashes(make_corpus(tmp_path / "c", "en", 12, seed=4, workers=1, extra=FAST_ROOMS))
    ma, mb = (json.loads((tmp_path / d / "manifest.json").read_text(encoding="utf-8")) for d in "ab")
    # 12 utterances: train 10 (5 noisy, their clean copies in clean/), dev 1, test 1, test_unseen 1, dev_noisy 1
    # and test_noisy 1 (each with a clean copy)
    assert a == b and sum(k.endswith(".flac") for k in a) == 10 + 3 + 2 + 5 + 2
    assert {u["condition"] for u in ma["utterances"]} - {"clean"}, "no noisy utterance: augmentation untested"
    flacs_a = {h for k, h in a.items() if k.endswith(".flac") and not k.startswith("clean/")}
    flacs_c = {h for k, h in c.items() if k.endswith(".flac") and not k.startswith("clean/")}
    assert len(flacs_c) == 15 and not flacs_a & flacs_c
    assert ma.pop("command") != mb.pop("command") and ma == mb


def test_workers_do_not_change_the_output(tmp_path: Path) -> None:
    one = tree_hashes(make_corpus(tmp_path / "one", "de", 20, seed=5, workers=1, extra=FAST_ROOMS))
    two = tree_hashes(make_corpus(tmp_path / "two", "de", 20, seed=5, workers=2, extra=FAST_ROOMS))
    assert one == two and any(k.startswith("clean/train/") for k in one)


# ---------------------------------------------------------------- errors


def test_missing_espeak_says_how_to_install(tmp_path: Path) -> None:
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    proc = run_cli(["--lang", "en", "--out", str(tmp_path / "out"), "--utterances", "5"], env_path=str(empty))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "espeak-ng" in proc.stderr and "apt-get install espeak-ng" in proc.stderr
    assert synth_main(["--lang", "en", "--out", str(tmp_path / "o2"), "--espeak", str(empty / "espeak-ng")]) == 2


def test_unknown_language_lists_choices(tmp_path: Path) -> None:
    proc = run_cli(["--lang", "fr", "--out", str(tmp_path / "out")])
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "'fr'" in proc.stderr and "en, de" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_missing_dictionary_says_how_to_install(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-de-en"
    assert synth_main(["--lang", "en", "--out", str(tmp_path / "out"), "--dictionary", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "apt-get install trans-de-en" in err and err.count("\n") == 1


def test_unwritable_output_dir_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "corpus"
    assert synth_main(["--lang", "en", "--out", str(out), "--utterances", "5"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "Not a directory" in err and err.count("\n") == 1


def test_non_empty_output_dir_needs_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "keep.txt").write_text("x")
    assert synth_main(["--lang", "en", "--out", str(tmp_path), "--utterances", "5"]) == 2
    assert "--force" in capsys.readouterr().err


def test_too_many_utterances(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert synth_main(["--lang", "en", "--out", str(tmp_path / "o"), "--utterances", "10000000"]) == 2
    assert "sentence pairs available" in capsys.readouterr().err


# ---------------------------------------------------------------- text and phones


def test_sentence_filter() -> None:
    assert is_plain_sentence("I followed him at a distance.")
    assert is_plain_sentence("Don't you like it, Ben?")
    for bad in ["to keep the distance", "I owe sb. an explanation.", "It costs 20 euros.", "Go (now)!",
                "He said: go.", "She works at the EU.", "Yes.", "and/or this is it.", 'He said "no".']:
        assert not is_plain_sentence(bad), bad
    line = "Erkältung {f} | Ich habe eine schlimme Erkältung. | Ich bin erkältet / verkühlt. :: cold | I’ve a bad cold. | I have a cold."
    pairs = pairs_from_line(line)
    assert [(p.de, p.en) for p in pairs] == [("Ich habe eine schlimme Erkältung.", "I've a bad cold.")]
    assert len(load_sentence_pairs()) > 5000


def test_clean_phones() -> None:
    assert clean_phones("h_ə_l_ˈoʊ") == ["h", "ə", "l", "oʊ"]
    assert clean_phones("(en)_b_ˈeɪ_b_i_(de)") == ["b", "eɪ", "b", "i"]
    assert clean_phones("_ˈa_p_ʃ_t_ˌ??_ts") == ["a", "p", "ʃ", "t", "ʊɐ", "ts"]
    assert normalise_transcript("Don't walk on the well-known Straße, he said!") == \
        "DON'T WALK ON THE WELL KNOWN STRASSE HE SAID"


# ---------------------------------------------------------------- audio I/O


def test_load_audio_rejects_wrong_rate_and_stereo(tmp_path: Path) -> None:
    t = np.arange(8000) / 8000
    low = tmp_path / "low.wav"
    sf.write(str(low), 0.5 * np.sin(2 * np.pi * 440 * t), 8000)
    with pytest.raises(AudioError, match=r"8000 Hz, expected 16000 Hz.*resample=True") as err:
        load_audio(low)
    assert str(low) in str(err.value)
    stereo = tmp_path / "stereo.flac"
    sf.write(str(stereo), np.zeros((16000, 2)), 16000)
    with pytest.raises(AudioError, match=r"2 channels, expected mono.*resample=True"):
        load_audio(stereo)


def test_load_audio_resamples_and_downmixes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    t = np.arange(44100) / 44100
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path / "cd.wav"
    sf.write(str(path), np.stack([tone, tone * 0.5], axis=1), 44100)
    with caplog.at_level(logging.INFO, logger="s3prl_colld.data.audio"):
        wav = load_audio(path, resample=True)
    assert wav.shape == (16000,) and wav.dtype == torch.float32
    expected = 0.375 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert np.abs(wav.numpy()[200:-200] - expected[200:-200]).max() < 0.01
    assert "resampling 44100 Hz -> 16000 Hz" in caplog.text and "2 channels" in caplog.text


def test_load_audio_unreadable_names_path(tmp_path: Path) -> None:
    bad = tmp_path / "broken.flac"
    bad.write_bytes(b"this is not audio")
    with pytest.raises(AudioError, match=re.escape(str(bad))):
        load_audio(bad)
    with pytest.raises(AudioError, match=re.escape(str(tmp_path / "missing.flac"))):
        load_audio(tmp_path / "missing.flac")
