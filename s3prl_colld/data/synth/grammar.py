"""English-German sentence pairs from a small templated grammar: a translation task a tiny model can learn.

The trans-de-en dictionary (:mod:`.sentences`) gives 13,406 real, diverse
sentences with a vocabulary far too large for a 2+2-layer speech translation
probe trained on 10 h of speech. This module makes pairs from a controlled
vocabulary instead (125 nouns with German gender and plural, 58
adjectives, 61 verbs, the numbers two to twelve, seven prepositions) and six
templates, each word translated one way only, so the mapping is
compositional::

    The small dog sees the red ball.            Der kleine Hund sieht den roten Ball.
    Three old men buy a green car.              Drei alte Männer kaufen ein grünes Auto.
    The cat sleeps under a big table.           Die Katze schläft unter einem großen Tisch.
    Does the girl see the cat in the house?     Sieht das Mädchen die Katze im Haus?
    The boy does not see a dog.                 Der Junge sieht keinen Hund.
    The women do not dance with three kings.    Die Frauen tanzen nicht mit drei Königen.

German agreement is done by rule: the article by gender, number and case
(subject nominative, object accusative, after a preposition dative; ``in
dem`` is always contracted to ``im``), the adjective ending strong, weak or
mixed after a number, ``der``/``die``/``das`` or ``ein``/``kein``, the
n-declension of weak masculine nouns (``den Jungen``, ``dem Bären``), the
dative plural ``-n`` (``mit den Kindern``), and the verb's person
(third person singular or plural). Negation: ``nicht`` after a definite
object or before a prepositional phrase, ``kein`` for an indefinite object.
Questions are verb-first (``Does the girl see ...?`` -> ``Sieht das Mädchen
...?``). Verbs are never separable. Nouns, verbs and adjectives carry tags
(person, animal, thing, food, place, readable, ...) so that subjects are
animate and objects fit their verb (people eat, cook and read; objects of
``read`` are books, letters, newspapers and maps).

:func:`grammar_pairs` draws a seeded, deterministic list of distinct pairs;
:func:`count_pairs` counts the sentences the grammar can make (about 1.1 x 10^14).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Sequence

from s3prl_colld.data.synth.sentences import SentencePair, spoken_words

__all__ = ["Noun", "Adjective", "Verb", "NounPhrase", "NOUNS", "ADJECTIVES", "VERBS", "NUMBERS", "PREPOSITIONS",
           "TEMPLATES", "Sentence", "generate_sentence", "generate_pair", "grammar_pairs", "count_pairs", "vocabulary", "content_words"]

CASES = ("nom", "acc", "dat")

# ---------------------------------------------------------------------------------------------- the vocabulary


@dataclass(frozen=True)
class Noun:
    """A noun in both languages: singular and plural forms, German gender (``m``/``f``/``n``).

    ``de_obl``: the accusative/dative singular of a weak masculine noun
    (``Junge`` -> ``Jungen``), else None. ``tags``: what it is (``person``,
    ``animal``, ``thing``, ``food``, ``place``, ...). ``preps``: the English
    prepositions it takes as a place (empty: never a place).
    """

    en: str
    en_pl: str
    de: str
    de_pl: str
    gender: str
    tags: frozenset[str]
    de_obl: str | None = None
    preps: tuple[str, ...] = ()

    def german(self, plural: bool, case: str) -> str:
        """The German form: the dative plural adds ``-n`` unless the plural ends in ``-n`` or ``-s``."""
        if plural:
            return self.de_pl + "n" if case == "dat" and not self.de_pl.endswith(("n", "s")) else self.de_pl
        return self.de_obl if case != "nom" and self.de_obl else self.de


@dataclass(frozen=True)
class Adjective:
    """An adjective: English form, German stem (endings are added by rule), the noun tags it goes with."""

    en: str
    de: str
    tags: frozenset[str]


@dataclass(frozen=True)
class Verb:
    """A present-tense verb: English 3rd singular and base form, German 3rd singular and plural.

    ``subject``: noun tags allowed as subject; ``objects``: noun tags allowed as
    accusative object (empty: intransitive); ``needs_place``: an intransitive
    verb that is always followed by a place (``lives in the house``).
    """

    en3: str
    en: str
    de3: str
    de_pl: str
    subject: frozenset[str]
    objects: frozenset[str] = frozenset()
    needs_place: bool = False


BUILDING = ("in", "behind", "in front of", "next to")
INSIDE = ("in",)
FURNITURE = ("on", "under", "behind", "in front of", "next to")
SURFACE = ("on",)


def _nouns(table: str, base_tags: str, preps: tuple[str, ...] = ()) -> list[Noun]:
    """Nouns from lines ``en en_pl de de_pl gender [obl=FORM] [+tag ...] [@place-kind]``."""
    kinds = {"building": BUILDING, "inside": INSIDE, "furniture": FURNITURE, "surface": SURFACE,
             "tree": ("under", "behind", "in front of", "next to"), "bridge": ("on", "under")}
    out = []
    for line in table.strip().splitlines():
        en, en_pl, de, de_pl, gender, *rest = line.split()
        obl = next((r[4:] for r in rest if r.startswith("obl=")), None)
        tags = frozenset(base_tags.split()) | {r[1:] for r in rest if r.startswith("+")}
        mine = next((kinds[r[1:]] for r in rest if r.startswith("@")), preps)
        out.append(Noun(en, en_pl, de, de_pl, gender, frozenset(tags | ({"place"} if mine else set())), obl, mine))
    return out


PEOPLE = _nouns("""
man men Mann Männer m
woman women Frau Frauen f
boy boys Junge Jungen m obl=Jungen
girl girls Mädchen Mädchen n
child children Kind Kinder n
aunt aunts Tante Tanten f
teacher teachers Lehrer Lehrer m
doctor doctors Arzt Ärzte m
farmer farmers Bauer Bauern m obl=Bauern
student students Student Studenten m obl=Studenten
king kings König Könige m
queen queens Königin Königinnen f
friend friends Freund Freunde m
sister sisters Schwester Schwestern f
brother brothers Bruder Brüder m
mother mothers Mutter Mütter f
father fathers Vater Väter m
neighbour neighbours Nachbar Nachbarn m obl=Nachbarn
soldier soldiers Soldat Soldaten m obl=Soldaten
pilot pilots Pilot Piloten m obl=Piloten
tourist tourists Tourist Touristen m obl=Touristen
baker bakers Bäcker Bäcker m
waiter waiters Kellner Kellner m
singer singers Sänger Sänger m
painter painters Maler Maler m
driver drivers Fahrer Fahrer m
nurse nurses Krankenschwester Krankenschwestern f
grandmother grandmothers Großmutter Großmütter f
grandfather grandfathers Großvater Großväter m
""", "person animate")

ANIMALS = _nouns("""
dog dogs Hund Hunde m
cat cats Katze Katzen f
horse horses Pferd Pferde n
cow cows Kuh Kühe f
bird birds Vogel Vögel m
mouse mice Maus Mäuse f
bear bears Bär Bären m obl=Bären
lion lions Löwe Löwen m obl=Löwen
monkey monkeys Affe Affen m obl=Affen
rabbit rabbits Hase Hasen m obl=Hasen
elephant elephants Elefant Elefanten m obl=Elefanten
duck ducks Ente Enten f
pig pigs Schwein Schweine n
goat goats Ziege Ziegen f
fox foxes Fuchs Füchse m
wolf wolves Wolf Wölfe m
frog frogs Frosch Frösche m
snake snakes Schlange Schlangen f
chicken chickens Huhn Hühner n
donkey donkeys Esel Esel m
tiger tigers Tiger Tiger m
rat rats Ratte Ratten f
""", "animal animate")

THINGS = _nouns("""
ball balls Ball Bälle m +throw
car cars Auto Autos n +machine +push @building
book books Buch Bücher n +readable +open +writable
cup cups Tasse Tassen f
box boxes Kiste Kisten f +open +push
chair chairs Stuhl Stühle m +push +buildable +machine @furniture
table tables Tisch Tische m +push +buildable +machine @furniture
bed beds Bett Betten n +push +buildable +machine @furniture
lamp lamps Lampe Lampen f +machine
door doors Tür Türen f +open +machine
window windows Fenster Fenster n +open +machine
letter letters Brief Briefe m +readable +writable +open
bag bags Tasche Taschen f +open
hat hats Hut Hüte m +throw
coat coats Mantel Mäntel m
shoe shoes Schuh Schuhe m +throw
key keys Schlüssel Schlüssel m +throw
clock clocks Uhr Uhren f +machine
bicycle bicycles Fahrrad Fahrräder n +machine +push
boat boats Boot Boote n +machine +push +buildable
picture pictures Bild Bilder n
flower flowers Blume Blumen f
stone stones Stein Steine m +throw
bottle bottles Flasche Flaschen f +open
glass glasses Glas Gläser n
pen pens Stift Stifte m
newspaper newspapers Zeitung Zeitungen f +readable
ship ships Schiff Schiffe n +buildable
dress dresses Kleid Kleider n
shirt shirts Hemd Hemden n
spoon spoons Löffel Löffel m
knife knives Messer Messer n
plate plates Teller Teller m
umbrella umbrellas Schirm Schirme m +open
guitar guitars Gitarre Gitarren f
map maps Karte Karten f +readable
ring rings Ring Ringe m
phone phones Telefon Telefone n +machine
""", "thing")

FOOD = _nouns("""
apple apples Apfel Äpfel m +throw
cake cakes Kuchen Kuchen m
egg eggs Ei Eier n
banana bananas Banane Bananen f
pear pears Birne Birnen f
tomato tomatoes Tomate Tomaten f
potato potatoes Kartoffel Kartoffeln f
carrot carrots Karotte Karotten f
sausage sausages Wurst Würste f
cookie cookies Keks Kekse m
lemon lemons Zitrone Zitronen f
""", "food")

PLACES = _nouns("""
house houses Haus Häuser n +buildable
school schools Schule Schulen f
church churches Kirche Kirchen f
station stations Bahnhof Bahnhöfe m
shop shops Laden Läden m
library libraries Bibliothek Bibliotheken f
hotel hotels Hotel Hotels n
museum museums Museum Museen n
hospital hospitals Krankenhaus Krankenhäuser n
bakery bakeries Bäckerei Bäckereien f
castle castles Schloss Schlösser n
barn barns Scheune Scheunen f +buildable
garage garages Garage Garagen f
tower towers Turm Türme m +buildable
garden gardens Garten Gärten m @inside
park parks Park Parks m @inside
forest forests Wald Wälder m @inside
city cities Stadt Städte f @inside
village villages Dorf Dörfer n @inside
kitchen kitchens Küche Küchen f @inside
room rooms Zimmer Zimmer n @inside
street streets Straße Straßen f @surface
field fields Feld Felder n @surface
tree trees Baum Bäume m @tree
bridge bridges Brücke Brücken f +buildable @bridge
""", "", BUILDING)

NOUNS: tuple[Noun, ...] = tuple(PEOPLE + ANIMALS + THINGS + FOOD + PLACES)


def _adjectives(table: str) -> list[Adjective]:
    """Adjectives from lines ``en de tag[,tag...]``."""
    out = []
    for line in table.strip().splitlines():
        en, de, tags = line.split()
        out.append(Adjective(en, de, frozenset(tags.split(","))))
    return out


ADJECTIVES: tuple[Adjective, ...] = tuple(_adjectives("""
small klein person,animal,thing,food,place
big groß person,animal,thing,food,place
old alt person,animal,thing,place
beautiful schön person,animal,thing,place
young jung person,animal
new neu thing,place
red rot thing,place,food
blue blau thing,place
green grün thing,place,food
yellow gelb thing,place,food
black schwarz animal,thing,place
white weiß animal,thing,place
brown braun animal,thing,food
grey grau animal,thing,place
happy glücklich person,animal
sad traurig person,animal
tired müde person,animal
hungry hungrig person,animal
friendly freundlich person,animal
strong stark person,animal
clever klug person,animal
funny lustig person,animal
brave mutig person,animal
lazy faul person,animal
proud stolz person,animal
angry wütend person,animal
shy schüchtern person,animal
curious neugierig person,animal
sick krank person,animal
calm ruhig person,animal,place
wild wild animal
fat dick person,animal,thing
thin dünn person,animal,thing
loud laut person,animal,place
rich reich person
poor arm person
famous berühmt person,place
kind nett person
polite höflich person
cheap billig thing,food
heavy schwer thing
clean sauber thing,place
dirty schmutzig thing,place
empty leer thing,place
full voll thing
round rund thing
soft weich thing,food
hard hart thing,food
wet nass animal,thing
dry trocken thing,food
long lang thing
short kurz thing
fresh frisch food
sweet süß food
hot heiß food
cold kalt food,place
warm warm food,place
ripe reif food
"""))

NUMBERS: tuple[tuple[str, str], ...] = (
    ("two", "zwei"), ("three", "drei"), ("four", "vier"), ("five", "fünf"), ("six", "sechs"), ("seven", "sieben"),
    ("eight", "acht"), ("nine", "neun"), ("ten", "zehn"), ("eleven", "elf"), ("twelve", "zwölf"))

PREPOSITIONS: dict[str, str] = {"in": "in", "on": "auf", "under": "unter", "behind": "hinter",
                                "in front of": "vor", "next to": "neben", "with": "mit"}


def _verbs(table: str, subject: str) -> list[Verb]:
    """Verbs from lines ``en3 | en | de3 | de_pl [: object tags]``; the object tag ``PLACE`` marks an
    intransitive verb always followed by a place; no tags: intransitive."""
    out = []
    for line in table.strip().splitlines():
        forms, _, tags = line.partition(":")
        en3, en, de3, de_pl = (f.strip() for f in forms.split("|"))
        needs_place = tags.strip() == "PLACE"
        out.append(Verb(en3, en, de3, de_pl, frozenset(subject.split()),
                        frozenset() if needs_place else frozenset(tags.split()), needs_place))
    return out


VERBS: tuple[Verb, ...] = tuple(
    _verbs("""
sees | see | sieht | sehen : person animal thing food
hears | hear | hört | hören : person animal
finds | find | findet | finden : person animal thing food
likes | like | mag | mögen : person animal thing food
loves | love | liebt | lieben : person animal
catches | catch | fängt | fangen : animal throw
holds | hold | hält | halten : animal thing food
chases | chase | jagt | jagen : person animal
watches | watch | beobachtet | beobachten : person animal
touches | touch | berührt | berühren : person animal thing
looks for | look for | sucht | suchen : person animal thing food
misses | miss | vermisst | vermissen : person animal
knows | know | kennt | kennen : person animal
""", "person animal")
    + _verbs("""
buys | buy | kauft | kaufen : thing food animal
sells | sell | verkauft | verkaufen : thing food animal
needs | need | braucht | brauchen : thing
carries | carry | trägt | tragen : thing food
takes | take | nimmt | nehmen : thing food
brings | bring | bringt | bringen : thing food
washes | wash | wäscht | waschen : animal thing
paints | paint | malt | malen : person animal thing
draws | draw | zeichnet | zeichnen : person animal thing
visits | visit | besucht | besuchen : person
calls | call | ruft | rufen : person animal
feeds | feed | füttert | füttern : animal
opens | open | öffnet | öffnen : open
closes | close | schließt | schließen : open
reads | read | liest | lesen : readable
writes | write | schreibt | schreiben : writable
eats | eat | isst | essen : food
cooks | cook | kocht | kochen : food
cuts | cut | schneidet | schneiden : food
builds | build | baut | bauen : buildable
repairs | repair | repariert | reparieren : machine
throws | throw | wirft | werfen : throw
meets | meet | trifft | treffen : person
asks | ask | fragt | fragen : person
counts | count | zählt | zählen : animal thing food
loses | lose | verliert | verlieren : thing
cleans | clean | putzt | putzen : thing
kisses | kiss | küsst | küssen : person animal
pushes | push | schiebt | schieben : push
pulls | pull | zieht | ziehen : push
greets | greet | grüßt | grüßen : person
hugs | hug | umarmt | umarmen : person animal
""", "person")
    + _verbs("""
sleeps | sleep | schläft | schlafen
waits | wait | wartet | warten
plays | play | spielt | spielen
sits | sit | sitzt | sitzen
stands | stand | steht | stehen
sings | sing | singt | singen
runs | run | läuft | laufen
rests | rest | ruht | ruhen
lies | lie | liegt | liegen
jumps | jump | springt | springen
""", "person animal")
    + _verbs("""
works | work | arbeitet | arbeiten
dances | dance | tanzt | tanzen
laughs | laugh | lacht | lachen
cries | cry | weint | weinen
talks | talk | redet | reden
eats | eat | isst | essen
reads | read | liest | lesen
writes | write | schreibt | schreiben
lives | live | wohnt | wohnen : PLACE
""", "person"))

TRANSITIVE = tuple(v for v in VERBS if v.objects)
INTRANSITIVE = tuple(v for v in VERBS if not v.objects)

# ---------------------------------------------------------------------------------------------- noun phrases

DEF_ARTICLE = {("nom", "m"): "der", ("nom", "f"): "die", ("nom", "n"): "das", ("acc", "m"): "den",
               ("acc", "f"): "die", ("acc", "n"): "das", ("dat", "m"): "dem", ("dat", "f"): "der", ("dat", "n"): "dem"}
DEF_PLURAL = {"nom": "die", "acc": "die", "dat": "den"}
INDEF_ARTICLE = {("nom", "m"): "ein", ("nom", "f"): "eine", ("nom", "n"): "ein", ("acc", "m"): "einen",
                 ("acc", "f"): "eine", ("acc", "n"): "ein", ("dat", "m"): "einem", ("dat", "f"): "einer",
                 ("dat", "n"): "einem"}

# determiner kinds: "the" (singular), "the+pl", "a", "num" (a number, plural), "no" (kein, singular; negation only)
DETERMINERS = ("the", "the+pl", "a", "num")
DETERMINER_WEIGHTS = (0.35, 0.15, 0.30, 0.20)


def adjective_ending(det: str, case: str, gender: str) -> str:
    """The German adjective ending after determiner kind ``det`` (see :data:`DETERMINERS`).

    Weak after der/die/das, mixed after ein/kein (singular), strong after a
    number (no article): ``der alte Mann``, ``einen alten Mann``, ``ein altes
    Auto``, ``drei alte Männer``, ``mit drei alten Männern``.
    """
    if det == "the+pl":
        return "en"
    if det == "num":
        return "en" if case == "dat" else "e"
    if det == "the":
        return "e" if case == "nom" or (case == "acc" and gender != "m") else "en"
    if det in ("a", "no"):
        if case == "dat" or (case == "acc" and gender == "m"):
            return "en"
        return {"m": "er", "f": "e", "n": "es"}[gender]
    raise ValueError(f"unknown determiner kind {det!r}")


def inflect(adjective: Adjective, ending: str) -> str:
    """The German stem plus ``ending``; a stem in ``-e`` keeps one ``e`` (``müde`` -> ``müde``, ``müden``)."""
    stem = adjective.de
    return (stem[:-1] if stem.endswith("e") else stem) + ending


@dataclass(frozen=True)
class NounPhrase:
    """A determiner kind, an optional adjective and a noun; ``number`` indexes :data:`NUMBERS` when ``det == "num"``."""

    noun: Noun
    det: str
    adjective: Adjective | None = None
    number: int | None = None

    @property
    def plural(self) -> bool:
        return self.det in ("the+pl", "num")

    def english(self) -> str:
        """``the small dog``, ``an old man``, ``three red balls`` (``no`` reads ``a``: ``does not see a dog``)."""
        words = [self.adjective.en] if self.adjective else []
        words.append(self.noun.en_pl if self.plural else self.noun.en)
        if self.det in ("the", "the+pl"):
            return " ".join(["the", *words])
        if self.det == "num":
            return " ".join([NUMBERS[self.number][0], *words])
        return " ".join(["an" if words[0][0] in "aeiou" else "a", *words])

    def german(self, case: str) -> str:
        """The phrase in ``case`` (``nom``, ``acc``, ``dat``), article, adjective and noun agreeing."""
        g = self.noun.gender
        if self.det == "the":
            article = DEF_ARTICLE[case, g]
        elif self.det == "the+pl":
            article = DEF_PLURAL[case]
        elif self.det == "a":
            article = INDEF_ARTICLE[case, g]
        elif self.det == "no":
            article = "k" + INDEF_ARTICLE[case, g]
        else:
            article = NUMBERS[self.number][1]
        words = [article]
        if self.adjective:
            words.append(inflect(self.adjective, adjective_ending(self.det, case, g)))
        words.append(self.noun.german(self.plural, case))
        return " ".join(words)


@dataclass(frozen=True)
class PrepPhrase:
    """A preposition (English key of :data:`PREPOSITIONS`) and its noun phrase, German dative."""

    prep: str
    np: NounPhrase

    def english(self) -> str:
        return f"{self.prep} {self.np.english()}"

    def german(self) -> str:
        phrase = self.np.german("dat")
        if self.prep == "in" and self.np.det == "the" and self.np.noun.gender in "mn":
            return "im " + phrase.split(" ", 1)[1]  # in dem -> im
        return f"{PREPOSITIONS[self.prep]} {phrase}"


@functools.lru_cache(maxsize=None)
def nouns_with(tags: frozenset[str]) -> tuple[Noun, ...]:
    """The nouns carrying any of ``tags``."""
    return tuple(n for n in NOUNS if n.tags & tags)


@functools.lru_cache(maxsize=None)
def adjectives_for(noun: Noun) -> tuple[Adjective, ...]:
    """The adjectives that go with ``noun`` (sharing a tag)."""
    return tuple(a for a in ADJECTIVES if a.tags & noun.tags)


PLACE_NOUNS = tuple(n for n in NOUNS if n.preps)
ANIMATE = nouns_with(frozenset({"animate"}))

# ---------------------------------------------------------------------------------------------- sampling

ADJECTIVE_PROBABILITY = 0.5
PLACE_PROBABILITY = 0.4  # a transitive sentence ends in a place
WITH_PROBABILITY = 0.35  # an intransitive one ends in "with" + noun phrase (else a place, else nothing)
TEMPLATES = ("statement", "statement_intransitive", "question", "question_intransitive", "negation",
             "negation_intransitive")
TEMPLATE_WEIGHTS = (0.40, 0.17, 0.13, 0.07, 0.15, 0.08)


def _noun_phrase(rng: random.Random, nouns: Sequence[Noun], dets: Sequence[str],
                 weights: Sequence[float] | None = None) -> NounPhrase:
    det = rng.choices(dets, weights)[0]
    noun = rng.choice(nouns)
    adjectives = adjectives_for(noun)
    adjective = rng.choice(adjectives) if adjectives and rng.random() < ADJECTIVE_PROBABILITY else None
    return NounPhrase(noun, det, adjective, rng.randrange(len(NUMBERS)) if det == "num" else None)


def _place(rng: random.Random) -> PrepPhrase:
    noun = rng.choice(PLACE_NOUNS)
    adjectives = adjectives_for(noun)
    adjective = rng.choice(adjectives) if rng.random() < ADJECTIVE_PROBABILITY else None
    return PrepPhrase(rng.choice(noun.preps), NounPhrase(noun, rng.choice(("the", "the", "a")), adjective))


def _tail(rng: random.Random, verb: Verb) -> PrepPhrase | None:
    """What follows an intransitive verb: a place, ``with`` + someone, or nothing."""
    if verb.needs_place:
        return _place(rng)
    r = rng.random()
    if r < WITH_PROBABILITY:
        return PrepPhrase("with", _noun_phrase(rng, ANIMATE, DETERMINERS, DETERMINER_WEIGHTS))
    return _place(rng) if r < WITH_PROBABILITY + 0.45 else None


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


@dataclass(frozen=True)
class Sentence:
    """One sentence of the grammar: ``kind`` (``statement``, ``question`` or ``negation``), a verb, its
    subject, its accusative object (None for an intransitive verb) and a prepositional phrase or None."""

    kind: str
    verb: Verb
    subject: NounPhrase
    obj: NounPhrase | None = None
    tail: PrepPhrase | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("statement", "question", "negation"):
            raise ValueError(f"unknown sentence kind {self.kind!r}: statement, question or negation")
        if (self.obj is None) != (not self.verb.objects):
            raise ValueError(f"{self.verb.en}: an object is needed exactly when the verb is transitive")
        if self.subject.det == "no" or (self.obj is not None and (self.obj.det == "no") != (
                self.kind == "negation" and self.obj.det not in ("the", "the+pl"))):
            raise ValueError("'no' (kein) is the indefinite object of a negation, and only that")

    def pair(self) -> SentencePair:
        """The sentence in English and German (capitalised, with its final ``.`` or ``?``)."""
        plural = self.subject.plural
        v = self.verb
        en_verb, de_verb = (v.en, v.de_pl) if plural else (v.en3, v.de3)
        en_obj = f" {self.obj.english()}" if self.obj else ""
        de_obj = f" {self.obj.german('acc')}" if self.obj else ""
        en_tail = f" {self.tail.english()}" if self.tail else ""
        de_tail = f" {self.tail.german()}" if self.tail else ""
        do = "do" if plural else "does"
        if self.kind == "statement":
            en = f"{self.subject.english()} {en_verb}{en_obj}{en_tail}."
            de = f"{self.subject.german('nom')} {de_verb}{de_obj}{de_tail}."
        elif self.kind == "question":
            en = f"{do} {self.subject.english()} {v.en}{en_obj}{en_tail}?"
            de = f"{de_verb} {self.subject.german('nom')}{de_obj}{de_tail}?"
        else:  # nicht after a definite object or before the phrase; an indefinite object takes kein instead
            en = f"{self.subject.english()} {do} not {v.en}{en_obj}{en_tail}."
            nicht = "" if self.obj is not None and self.obj.det == "no" else " nicht"
            de = f"{self.subject.german('nom')} {de_verb}{de_obj}{nicht}{de_tail}."
        return SentencePair(_cap(en), _cap(de))


def generate_sentence(rng: random.Random) -> Sentence:
    """One sentence drawn from ``rng``: a template (:data:`TEMPLATES`), a verb, then its phrases."""
    template = rng.choices(TEMPLATES, TEMPLATE_WEIGHTS)[0]
    kind, _, intransitive = template.partition("_")
    verb = rng.choice(INTRANSITIVE if intransitive else TRANSITIVE)
    subject = _noun_phrase(rng, nouns_with(verb.subject), DETERMINERS, DETERMINER_WEIGHTS)
    if intransitive:
        return Sentence(kind, verb, subject, None, _tail(rng, verb))
    objects = nouns_with(verb.objects)
    if kind == "negation":  # a transitive negation has no phrase after its object
        return Sentence(kind, verb, subject, _noun_phrase(rng, objects, ("the", "the+pl", "no"), (0.4, 0.2, 0.4)))
    obj = _noun_phrase(rng, objects, DETERMINERS, DETERMINER_WEIGHTS)
    return Sentence(kind, verb, subject, obj, _place(rng) if rng.random() < PLACE_PROBABILITY else None)


def generate_pair(rng: random.Random) -> SentencePair:
    """One sentence pair drawn from ``rng`` (:func:`generate_sentence`)."""
    return generate_sentence(rng).pair()


def grammar_pairs(n: int, seed: int | str = 0) -> list[SentencePair]:
    """``n`` distinct pairs (no English and no German sentence twice, case-insensitive), the same for the same seed.

    Raises:
        ValueError: when ``n`` is below 1.
    """
    if n < 1:
        raise ValueError(f"grammar_pairs needs n >= 1, got {n}")
    rng = random.Random(f"s3prl-colld-grammar-{seed}")
    seen_en: set[str] = set()
    seen_de: set[str] = set()
    out: list[SentencePair] = []
    while len(out) < n:
        pair = generate_pair(rng)
        en, de = pair.en.lower(), pair.de.lower()
        if en in seen_en or de in seen_de:
            continue
        seen_en.add(en)
        seen_de.add(de)
        out.append(pair)
    return out


# ---------------------------------------------------------------------------------------------- counting


def _np_count(nouns: Sequence[Noun], dets: Sequence[str]) -> int:
    """Distinct noun phrases of ``nouns`` with the determiner kinds ``dets`` (an adjective or none)."""
    per_det = sum(len(NUMBERS) if d == "num" else 1 for d in dets)
    return per_det * sum(1 + len(adjectives_for(n)) for n in nouns)


def _place_count() -> int:
    return sum(len(n.preps) * 2 * (1 + len(adjectives_for(n))) for n in PLACE_NOUNS)  # the/a, adjective or none


def count_pairs() -> int:
    """How many distinct sentences (pairs) the grammar can make: the sum over templates and verbs of the
    product of each slot's choices (every choice changes the German sentence)."""
    places = _place_count()
    withs = _np_count(ANIMATE, DETERMINERS)
    total = 0
    for verb in VERBS:
        subjects = _np_count(nouns_with(verb.subject), DETERMINERS)
        if verb.objects:
            objects = nouns_with(verb.objects)
            total += 2 * subjects * _np_count(objects, DETERMINERS) * (1 + places)  # statement, question
            total += subjects * _np_count(objects, ("the", "the+pl", "no"))  # negation
        else:
            tails = places if verb.needs_place else 1 + places + withs
            total += 3 * subjects * tails  # statement, question, negation
    return total


# ---------------------------------------------------------------------------------------------- vocabulary


def content_words() -> dict[str, int]:
    """Lemmas per word class: nouns, adjectives, verbs (distinct German infinitives), numbers, prepositions."""
    return {"nouns": len({n.de for n in NOUNS}), "adjectives": len(ADJECTIVES),
            "verbs": len({v.de_pl for v in VERBS}), "numbers": len(NUMBERS), "prepositions": len(PREPOSITIONS)}


def vocabulary(lang: str) -> set[str]:
    """Every word form (lower case, as :func:`~.sentences.spoken_words` splits it) the grammar can write in ``lang``."""
    if lang not in ("en", "de"):
        raise ValueError(f"unknown language {lang!r}: choose en or de")
    words: set[str] = set()
    if lang == "en":
        words |= {"the", "a", "an", "does", "do", "not"}
        for n in NOUNS:
            words |= {n.en, n.en_pl}
        words |= {a.en for a in ADJECTIVES} | {e for e, _ in NUMBERS}
        for v in VERBS:
            words |= set(v.en3.split()) | set(v.en.split())
        for p in PREPOSITIONS:
            words |= set(p.split())
    else:
        words |= set(DEF_ARTICLE.values()) | set(DEF_PLURAL.values()) | set(INDEF_ARTICLE.values())
        words |= {"k" + INDEF_ARTICLE["acc", g] for g in "mfn"} | {"nicht", "im"} | set(PREPOSITIONS.values())
        for n in NOUNS:
            words |= {n.german(p, c) for p in (False, True) for c in CASES}
        words |= {inflect(a, e) for a in ADJECTIVES for e in ("e", "en", "er", "es")} | {d for _, d in NUMBERS}
        words |= {v.de3 for v in VERBS} | {v.de_pl for v in VERBS}
    return {w for text in words for w in spoken_words(text)}
