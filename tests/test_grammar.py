"""The templated bilingual grammar (``--sentences grammar``): German agreement, determinism, size, and a tiny corpus."""

from __future__ import annotations

import csv
import json
import random
import re
import subprocess
from pathlib import Path

import pytest

from s3prl_colld.data.synth import grammar
from s3prl_colld.data.synth.generate import grammar_pool_size, parser
from s3prl_colld.data.synth.corpus_plan import sizes_for_utterances
from s3prl_colld.data.synth.grammar import (ADJECTIVES, NOUNS, PREPOSITIONS, VERBS, NounPhrase, PrepPhrase, Sentence,
                                            content_words, count_pairs, grammar_pairs, vocabulary)
from s3prl_colld.data.synth.sentences import is_plain_sentence, spoken_words

from conftest import make_corpus


def noun(en: str) -> grammar.Noun:
    return next(n for n in NOUNS if n.en == en)


def adj(en: str) -> grammar.Adjective:
    return next(a for a in ADJECTIVES if a.en == en)


def verb(en3: str, transitive: bool = True) -> grammar.Verb:
    return next(v for v in VERBS if v.en3 == en3 and bool(v.objects) == transitive)


# ---------------------------------------------------------------- hand-picked sentences


@pytest.mark.parametrize("sentence, en, de", [
    (Sentence("statement", verb("sees"), NounPhrase(noun("dog"), "the", adj("small")),
              NounPhrase(noun("ball"), "the", adj("red"))),
     "The small dog sees the red ball.", "Der kleine Hund sieht den roten Ball."),
    (Sentence("statement", verb("buys"), NounPhrase(noun("man"), "num", adj("old"), 1),
              NounPhrase(noun("car"), "a", adj("green"))),
     "Three old men buy a green car.", "Drei alte Männer kaufen ein grünes Auto."),
    (Sentence("question", verb("sees"), NounPhrase(noun("girl"), "the"), NounPhrase(noun("cat"), "the")),
     "Does the girl see the cat?", "Sieht das Mädchen die Katze?"),
    (Sentence("question", verb("sleeps", False), NounPhrase(noun("dog"), "the+pl"), None,
              PrepPhrase("in", NounPhrase(noun("house"), "the", adj("big")))),
     "Do the dogs sleep in the big house?", "Schlafen die Hunde im großen Haus?"),
    (Sentence("negation", verb("sees"), NounPhrase(noun("boy"), "the"), NounPhrase(noun("dog"), "no")),
     "The boy does not see a dog.", "Der Junge sieht keinen Hund."),
    (Sentence("negation", verb("reads"), NounPhrase(noun("woman"), "a", adj("tired")),
              NounPhrase(noun("newspaper"), "the")),
     "A tired woman does not read the newspaper.", "Eine müde Frau liest die Zeitung nicht."),
    (Sentence("negation", verb("dances", False), NounPhrase(noun("child"), "the+pl"), None,
              PrepPhrase("with", NounPhrase(noun("king"), "num", None, 1))),
     "The children do not dance with three kings.", "Die Kinder tanzen nicht mit drei Königen."),
    (Sentence("statement", verb("feeds"), NounPhrase(noun("farmer"), "a", adj("old")),
              NounPhrase(noun("bear"), "the"), PrepPhrase("under", NounPhrase(noun("tree"), "a", adj("big")))),
     "An old farmer feeds the bear under a big tree.", "Ein alter Bauer füttert den Bären unter einem großen Baum."),
    (Sentence("statement", verb("plays", False), NounPhrase(noun("baker"), "a", adj("young")), None,
              PrepPhrase("with", NounPhrase(noun("rabbit"), "the", adj("white")))),
     "A young baker plays with the white rabbit.", "Ein junger Bäcker spielt mit dem weißen Hasen."),
    (Sentence("statement", verb("lives", False), NounPhrase(noun("queen"), "the"), None,
              PrepPhrase("in", NounPhrase(noun("kitchen"), "a", adj("clean")))),
     "The queen lives in a clean kitchen.", "Die Königin wohnt in einer sauberen Küche."),
])
def test_hand_picked_sentences(sentence: Sentence, en: str, de: str) -> None:
    assert sentence.pair().en == en
    assert sentence.pair().de == de


def test_articles_and_adjective_endings_by_gender_and_case() -> None:
    cat, dog, car, rabbit = noun("cat"), noun("dog"), noun("car"), noun("rabbit")
    red = adj("red")
    # accusative: feminine die, masculine den, neuter das; weak ending after der/die/das
    assert NounPhrase(cat, "the", red).german("acc") == "die rote Katze"
    assert NounPhrase(dog, "the", red).german("acc") == "den roten Hund"
    assert NounPhrase(car, "the", red).german("acc") == "das rote Auto"
    # mixed endings after ein: -er / -e / -es in the nominative, -en in the masculine accusative
    assert NounPhrase(dog, "a", red).german("nom") == "ein roter Hund"
    assert NounPhrase(cat, "a", red).german("nom") == "eine rote Katze"
    assert NounPhrase(car, "a", red).german("acc") == "ein rotes Auto"
    assert NounPhrase(dog, "a", red).german("acc") == "einen roten Hund"
    assert NounPhrase(car, "no", red).german("acc") == "kein rotes Auto"
    # dative: dem / der / einem, -en everywhere; the plural adds -n (not after -n or -s)
    assert NounPhrase(cat, "the", red).german("dat") == "der roten Katze"
    assert NounPhrase(car, "a", red).german("dat") == "einem roten Auto"
    assert NounPhrase(dog, "the+pl", red).german("dat") == "den roten Hunden"
    assert NounPhrase(car, "the+pl").german("dat") == "den Autos"
    assert NounPhrase(cat, "num", None, 0).german("dat") == "zwei Katzen"
    # strong endings after a number
    assert NounPhrase(dog, "num", red, 10).german("nom") == "zwölf rote Hunde"
    assert NounPhrase(dog, "num", red, 10).german("dat") == "zwölf roten Hunden"
    # n-declension of weak masculine nouns
    assert NounPhrase(rabbit, "the").german("nom") == "der Hase"
    assert NounPhrase(rabbit, "the").german("acc") == "den Hasen"
    assert NounPhrase(rabbit, "a", adj("brown")).german("dat") == "einem braunen Hasen"
    # prepositions: in dem contracts, the others do not
    assert PrepPhrase("in", NounPhrase(noun("garden"), "the")).german() == "im Garten"
    assert PrepPhrase("in", NounPhrase(noun("kitchen"), "the")).german() == "in der Küche"
    assert PrepPhrase("in front of", NounPhrase(noun("house"), "the")).german() == "vor dem Haus"
    assert PrepPhrase("on", NounPhrase(noun("street"), "the")).german() == "auf der Straße"
    # English a/an
    assert NounPhrase(noun("elephant"), "a").english() == "an elephant"
    assert NounPhrase(noun("elephant"), "a", adj("small")).english() == "a small elephant"


def test_bad_sentences_are_refused() -> None:
    with pytest.raises(ValueError, match="transitive"):
        Sentence("statement", verb("sees"), NounPhrase(noun("dog"), "the"))
    with pytest.raises(ValueError, match="kein"):
        Sentence("statement", verb("sees"), NounPhrase(noun("dog"), "the"), NounPhrase(noun("cat"), "no"))
    with pytest.raises(ValueError, match="kein"):
        Sentence("negation", verb("sees"), NounPhrase(noun("dog"), "the"), NounPhrase(noun("cat"), "a"))
    with pytest.raises(ValueError, match="kind"):
        Sentence("command", verb("sleeps", False), NounPhrase(noun("dog"), "the"))


# ---------------------------------------------------------------- generated pairs, checked by an independent reading

# article -> (gender or "pl", case, adjective ending) readings, German grammar written out by hand
ARTICLES = {
    "der": [("m", "nom", "e"), ("f", "dat", "en")],
    "die": [("f", "nom", "e"), ("f", "acc", "e"), ("pl", "nom", "en"), ("pl", "acc", "en")],
    "das": [("n", "nom", "e"), ("n", "acc", "e")],
    "den": [("m", "acc", "en"), ("pl", "dat", "en")],
    "dem": [("m", "dat", "en"), ("n", "dat", "en")],
    "im": [("m", "dat", "en"), ("n", "dat", "en")],
    "ein": [("m", "nom", "er"), ("n", "nom", "es"), ("n", "acc", "es")],
    "eine": [("f", "nom", "e"), ("f", "acc", "e")],
    "einen": [("m", "acc", "en")],
    "einem": [("m", "dat", "en"), ("n", "dat", "en")],
    "einer": [("f", "dat", "en")],
    "kein": [("n", "acc", "es")],
    "keine": [("f", "acc", "e")],
    "keinen": [("m", "acc", "en")],
    **{de: [("pl", "nom", "e"), ("pl", "acc", "e"), ("pl", "dat", "en")] for _, de in grammar.NUMBERS},
}
DATIVE_PREPS = set(PREPOSITIONS.values())


def noun_readings() -> dict[str, set[tuple[str, str]]]:
    """German noun form -> {(gender or "pl", case)}."""
    out: dict[str, set[tuple[str, str]]] = {}
    for n in NOUNS:
        for plural in (False, True):
            for case in ("nom", "acc", "dat"):
                out.setdefault(n.german(plural, case), set()).add(("pl" if plural else n.gender, case))
    return out


def check_german(de: str, readings: dict[str, set[tuple[str, str]]]) -> None:
    """Every article agrees with its (adjective and) noun; the first bare noun phrase is nominative, the second
    accusative, one after a preposition dative; the verb agrees with the subject."""
    tokens = de[:-1].split()
    tokens[0] = tokens[0][0].lower() + tokens[0][1:]  # no sentence starts with a noun
    verbs3, verbs_pl = {v.de3 for v in VERBS}, {v.de_pl for v in VERBS}
    bare = 0
    subject_plural = None
    i = 0
    while i < len(tokens):
        article = tokens[i]
        if article not in ARTICLES:
            i += 1
            continue
        after_prep = article == "im" or (i > 0 and tokens[i - 1] in DATIVE_PREPS)
        case = "dat" if after_prep else ("nom", "acc")[bare]
        bare += not after_prep
        j = i + 1
        ending = None
        if tokens[j][0].islower():  # an adjective
            stem = next(a.de.rstrip("e") for a in sorted(ADJECTIVES, key=lambda a: -len(a.de))
                        if tokens[j].startswith(a.de.rstrip("e")))
            ending = tokens[j][len(stem):]
            j += 1
        options = [(g, c, e) for g, c, e in ARTICLES[article] if c == case and (g, c) in readings[tokens[j]]]
        assert options, f"{de!r}: {article} ... {tokens[j]} is not a {case} phrase"
        if ending is not None:
            assert ending in {e for _, _, e in options}, f"{de!r}: wrong adjective ending in {tokens[i:j + 1]}"
        if case == "nom":
            subject_plural = options[0][0] == "pl"
        i = j + 1
    assert subject_plural is not None, f"{de!r}: no subject"
    right, wrong = (verbs_pl, verbs3) if subject_plural else (verbs3, verbs_pl)
    assert set(tokens) & right and not set(tokens) & wrong, f"{de!r}: the verb does not agree with the subject"


def test_generated_german_agrees_and_english_matches() -> None:
    readings = noun_readings()
    pairs = grammar_pairs(3000, seed=11)
    kinds = {"question": 0, "negation": 0, "im": 0, "kein": 0, "mit": 0, "number": 0}
    for p in pairs:
        check_german(p.de, readings)
        en, de = p.en.split(), p.de[:-1].split()
        for k, word in enumerate(en[:-1]):  # a/an before the next word's sound (no h- or yu- words in the grammar)
            if word.lower() in ("a", "an"):
                assert (word.lower() == "an") == (en[k + 1][0] in "aeiou"), p.en
        for n in NOUNS:  # every noun appears in both sides or in neither
            in_en = bool({n.en, n.en_pl} & set(spoken_words(p.en)))
            in_de = bool({n.german(pl, c) for pl in (False, True) for c in ("nom", "acc", "dat")} & set(de))
            assert in_en == in_de, (p, n.en)
        kinds["question"] += p.en.endswith("?")
        kinds["negation"] += " not " in p.en
        kinds["im"] += "im" in de
        kinds["kein"] += any(w.startswith("kein") for w in de)
        kinds["mit"] += "mit" in de
        kinds["number"] += bool({d for _, d in grammar.NUMBERS} & {de[0].lower(), *de})
    assert all(count > 50 for count in kinds.values()), kinds


def test_deterministic_per_seed_and_prefix_stable() -> None:
    a = grammar_pairs(500, seed=3)
    assert a == grammar_pairs(500, seed=3)
    assert grammar_pairs(100, seed=3) == a[:100]
    assert len(set(a) & set(grammar_pairs(500, seed=4))) < 10
    with pytest.raises(ValueError, match="n >= 1"):
        grammar_pairs(0)


def test_plain_sentences_and_closed_vocabulary() -> None:
    pairs = grammar_pairs(5000, seed=0)
    for p in pairs:
        assert is_plain_sentence(p.en) and is_plain_sentence(p.de), p
    for lang in ("en", "de"):
        used = {w for p in pairs for w in spoken_words(p.side(lang))}
        assert used <= vocabulary(lang)
        assert len(used) > 0.8 * len(vocabulary(lang)), f"{lang}: only {len(used)} of the word forms in 5000 pairs"
    words = content_words()
    assert 150 <= words["nouns"] + words["adjectives"] + words["verbs"] <= 300, words
    assert len(vocabulary("en")) < 600 and len(vocabulary("de")) < 800


def test_enough_distinct_pairs() -> None:
    assert count_pairs() >= 10**9
    rng = random.Random(0)
    drawn = [grammar.generate_pair(rng) for _ in range(20000)]
    assert len({p.en for p in drawn}) > 0.97 * len(drawn)
    assert len({p.de for p in drawn}) == len({p.en for p in drawn}) == len(set(drawn))  # one translation per sentence
    pool = grammar_pairs(20000, seed=0)
    assert len({p.en.lower() for p in pool}) == len({p.de.lower() for p in pool}) == 20000


@pytest.mark.parametrize("lang, voice", [("de", "de"), ("en", "en-us")])
def test_espeak_reads_every_word_in_its_language(lang: str, voice: str) -> None:
    words = sorted(vocabulary(lang))
    out = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", voice], input="\n".join(words) + "\n",
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) == len(words)
    switched = [w for w, line in zip(words, out) if re.search(r"\([a-z-]+\)", line)]
    assert not switched, f"espeak-ng -v {voice} reads these as another language: {switched}"
    assert all(line.strip() for line in out)


# ---------------------------------------------------------------- the corpus with --sentences grammar


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.mark.parametrize("lang", ["en", "de"])
def test_tiny_grammar_corpus(lang: str, tmp_path: Path) -> None:
    # --dictionary points nowhere: the grammar needs no dictionary
    root = make_corpus(tmp_path / "corpus", lang, 20, seed=5, workers=1,
                       extra=["--sentences", "grammar", "--dictionary", str(tmp_path / "missing")])
    target = "de" if lang == "en" else "en"
    pool = {(p.side(lang), p.side(target)) for p in grammar_pairs(grammar_pool_size(sizes_for_utterances(20)), 5)}
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["sentences"] == "grammar" and manifest["grammar"]["pairs_possible"] == count_pairs()
    texts: dict[str, set[str]] = {}
    for split in ("train", "dev", "test", "test_unseen", "dev_noisy"):
        rows = read_tsv(root / "covost" / f"{split}.tsv")
        assert len(rows) == manifest["counts"][split] > 0
        for row in rows:
            assert (row["src_text"], row["tgt_text"]) in pool, row
        texts[split] = {row["src_text"] for row in rows}
    assert not texts["train"] & (texts["dev"] | texts["test"] | texts["test_unseen"])
    lexicon = {line.split("\t")[0] for line in (root / "lexicon.txt").read_text(encoding="utf-8").splitlines()}
    assert {w.upper() for t in texts["train"] for w in spoken_words(t)} <= lexicon
    assert lexicon <= {w.upper() for w in vocabulary(lang)}


def test_sentences_flag_default_and_choices(capsys: pytest.CaptureFixture[str]) -> None:
    assert parser().parse_args(["--lang", "en", "--out", "x"]).sentences == "dictionary"
    with pytest.raises(SystemExit):
        parser().parse_args(["--lang", "en", "--out", "x", "--sentences", "templates"])
    err = capsys.readouterr().err
    assert "templates" in err and "grammar" in err
