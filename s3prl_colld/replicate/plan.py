"""The grid's plan: its rows (students), its budgets (scales) and the claims it checks; data only, no work.

Every method of ``../shared/docs/methods.md`` is distilled from one tiny HuBERT
teacher at one budget (steps, data, batch), then probed SUPERB-style
(``stages``, ``run``). CoLLD's multilingual setting adds a second teacher, the
same tiny HuBERT pretrained on English + German (``corpus_mix``), with its
students (``MULTILINGUAL``); it is made only when a planned row needs it.
``--scale`` picks the budget: ``full`` is the whole grid, ``reduced`` what fits
in about two hours here (the run in ``docs/results/``), ``demo`` the grid of
``make demo`` (about 15 min) and ``tiny`` the test suite's end-to-end run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from s3prl_colld.constants import HUBERT_HUB_NAMES

PR_SPLITS = ("test", "test_noisy", "test_unseen")
ASR_SPLITS = PR_SPLITS  # ASR is tested on the same splits, where the corpus has them
ST_SPLITS = ("test",)
TASKS = ("pr", "asr", "st")  # the probe tasks of ``--tasks``
# ST directions: results.json block name -> the corpus (spoken language) it trains and tests on
ST_DIRECTIONS: dict[str, str] = {"st_en_de": "en", "st_de_en": "de"}


def st_direction(field: str) -> str:
    """An ST block's name as probe names, ``--st-directions`` and the report write it: ``st_en_de`` -> ``en-de``."""
    return field[3:].replace("_", "-")


@dataclass(frozen=True)
class Student:
    """One row of the grid: a distillation task with its overrides, distilled ``seeds`` times.

    ``key`` identifies the row (scales, claims, ``results.json``'s ``key``); ``name`` is what the report shows,
    and names its run folders and stages (``students/<slug(name)>-sN``), so a renamed row is distilled again.
    """

    name: str
    task: str
    seeds: int
    overrides: str = ""  # extra ``-o`` (``,,``-joined, without a leading ``,,``)
    model: dict[str, Any] | None = None  # student shape, written as the run's ``-g`` yaml
    corpus: str = "en"  # en | mix (English + German, the CoLLD multilingual setting): the data it is distilled on
    teacher: str = "en"  # en | mix: the teacher it is distilled from (pretrained on English, or on the mix)
    needs_frontend: bool = False  # stage 2 of input distillation: needs the Fbank front-end of stage 1
    curve: bool = False  # probe intermediate checkpoints too (learning curve)
    data_every: int = 1  # distilled on every N-th of the English pretraining utterances (little data: N > 1)
    key: str = ""  # required: the row's identity (see above)
    # the key of the swept method whose dev-chosen setting this row takes on top of its own overrides (CoLLD's
    # variants take CoLLD's, so that e.g. "colld+disc" against "colld" differs by the discriminative loss only);
    # "" for a swept method itself and rows of no swept family
    family: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError(f"Student {self.name!r} needs a key (its identity in scales, claims and results)")
        for field in ("corpus", "teacher"):
            if getattr(self, field) not in TEACHERS:
                raise ValueError(f"Student {self.name!r}: {field}={getattr(self, field)!r}, expected one of "
                                 f"{', '.join(TEACHERS)}")
        if self.data_every < 1 or (self.data_every > 1 and self.corpus != "en"):
            raise ValueError(f"Student {self.name!r}: data_every={self.data_every} needs an integer >= 1, and "
                             "1 on the mix (less data is a subset of the English pretraining utterances)")


@dataclass(frozen=True)
class Baseline:
    """A row that is not distilled (a teacher, fbank, ...), named in claims like a :class:`Student`: its key (and
    display name) in ``results.json``."""

    key: str

    @property
    def name(self) -> str:
        return self.key


TEACHER = Baseline("teacher")  # the English teacher (teacher_it1, teacher)
TEACHER_MIX = Baseline("teacher_mix")  # the multilingual teacher (teacher_mix_it1, teacher_mix): a row when planned
# the teachers by the corpus they are pretrained on (a student's ``corpus`` and ``teacher``: English, or English +
# German in ``corpus_mix``); their keys name their rows and run folders
TEACHERS: dict[str, Baseline] = {"en": TEACHER, "mix": TEACHER_MIX}
# the rows that are no distillation (``--baselines`` picks among them): the teachers, the two fixed front-ends and
# the English teacher's shape with random weights
BASELINES: tuple[str, ...] = (TEACHER.key, TEACHER_MIX.key, "fbank", "mfcc", "random_init")
TEACHER_FRONTENDS = tuple(HUBERT_HUB_NAMES)  # Scale.teacher_frontend: cnn, fbank
# the s3prl upstream of each English baseline probed by the bench experiments (the teacher's checkpoint: GRID/teacher)
BASELINE_UPSTREAMS: dict[str, str] = {"fbank": "fbank", "mfcc": "mfcc", TEACHER.key: "hubert_local"}


@dataclass(frozen=True)
class Scale:
    """The budget of one grid size."""

    en_args: tuple[str, ...]  # synth arguments of the English corpus
    de_args: tuple[str, ...] | None  # German corpus (None: no German stage)
    teacher_overrides: str
    teacher_iter2_overrides: str | None  # None: iteration 1 only
    student_steps: int
    student_batch: int
    frontend_steps: int
    probe_overrides: str
    probe_seeds: int  # for the baselines
    asr_overrides: str | None  # ``-o`` text of the ASR probes (None: the scale has no ASR stage)
    asr_top: int  # unused since the ASR rows are the plan's (``ASR_ROWS``); kept for old callers
    st_overrides: str | None  # ``-o`` text of the ST probes (None: no ST stage)
    seeds_cap: int | None = None  # at most this many distillation seeds per student
    students: tuple[str, ...] | None = None  # keys of the students to run (None: all of STUDENTS)
    baselines: tuple[str, ...] | None = None  # keys of the baseline rows to probe (None: all of BASELINES)
    rtf_utterances: int = 20
    curves: bool = True  # probe intermediate checkpoints of the main comparison (learning curve)
    pretrain_every: int = 1  # teacher and students train on every N-th training utterance (1: all)
    # probe presets: a yaml under configs/downstream/ (``-c``; None: the task's default, SUPERB's head)
    asr_config: str | None = None
    st_config: str | None = None
    synth_workers: int = 2  # processes of the corpus synthesiser (0: every core of the machine)
    tasks: tuple[str, ...] | None = None  # the probe tasks run by default (None: pr, plus asr / st where set)
    # retries of a collapsed probe (the first N of downstream.retry.DEFAULT_RETRIES); a toy scale whose probes are
    # too short to learn sets 0: its collapsed probes are flagged and left out, not trained again
    probe_retries: int = 3
    # the budget curve (``--stages curves``): the main students (``Student.curve``) distilled for each of these
    # step counts, ``curve_seeds`` seeds each, probed on PR test (empty: the scale has no curve stage)
    curve_steps: tuple[int, ...] = ()
    curve_seeds: int = 2
    # synth arguments of ST's own corpora, one per spoken language (``corpus_st_en``, ``corpus_st_de``); None:
    # ST runs on the English corpus (En->De) and the German one (De->En)
    st_corpus_args: tuple[str, ...] | None = None
    asr_on_st_corpus: bool = False  # ASR trains and tests on ST's English corpus instead of PR's
    # the ST blocks probed (keys of ST_DIRECTIONS; ``--st-directions``): both by default, one for a partial run
    st_directions: tuple[str, ...] = tuple(ST_DIRECTIONS)
    # the teachers' front-end (``--teacher-frontend``; config.model.frontend of -u hubert_tiny): cnn (HuBERT's
    # waveform CNN) | fbank (log-mels + 2 convs, models.tiny_hubert.FbankExtractor; loads as hubert_fbank_local)
    teacher_frontend: str = "cnn"

    @property
    def teacher_upstream(self) -> str:
        """The ``s3prl.hub`` name of this scale's teachers and of the ``random_init`` row (their shape)."""
        return HUBERT_HUB_NAMES[self.teacher_frontend]

    def teacher_run_overrides(self, iteration: int) -> str:
        """``-o`` text that gives teacher iteration ``iteration`` (1 or 2) this scale's front-end: its
        ``config.model.frontend`` and, for iteration 2, the iteration-1 model's hub name (empty for the CNN: the
        runs' configs as before the option)."""
        if self.teacher_frontend == "cnn":
            return ""
        return f",,config.model.frontend={self.teacher_frontend}" + (
            f",,config.teacher.name={self.teacher_upstream}" if iteration == 2 else "")

    def student_teacher_overrides(self) -> str:
        """``-o`` text naming this scale's teacher to a distillation run (empty for the CNN: ``hubert_local``,
        the tasks' default)."""
        return "" if self.teacher_frontend == "cnn" else f",,config.teacher.name={self.teacher_upstream}"

    def default_tasks(self) -> tuple[str, ...]:
        """What ``--tasks`` is when not given: ``tasks``, else PR plus ASR / ST where the scale sets them."""
        if self.tasks is not None:
            return self.tasks
        return ("pr", *(["asr"] if self.asr_overrides is not None else []),
                *(["st"] if self.st_overrides is not None else []))


# Deep-thin against shallow-wide at equal parameters (Wang et al. at mini scale): 1.140 M and 1.139 M.
DEEP_THIN = {"layers": 4, "dim": 128, "ffn_dim": 512, "heads": 4}
SHALLOW_WIDE = {"layers": 2, "dim": 192, "ffn_dim": 524, "heads": 4}

DISTILHUBERT = Student("distilhubert", "distilhubert", 3, curve=True, key="distilhubert")
L2L = Student("l2l", "l2l_distiller", 2, key="l2l")
COLLD = Student("colld", "colld_distiller", 3, curve=True, key="colld")
COLLD_DISC = Student("colld+disc", "colld_distiller", 2, "config.loss.disc_weight=1.0", key="colld_disc",
                     family="colld")
DISTILHUBERT_DISC = Student("distilhubert+disc", "distilhubert", 2, "config.loss.disc_weight=1.0",
                            key="distilhubert_disc", family="distilhubert")
# the discriminative loss with little data (Wang et al.: it helps in low-resource settings): DistilHuBERT with and
# without it, distilled on a tenth of the English pretraining utterances (reduced: 301 of 3,013, about 12 minutes
# of speech, which the 300-step budget of batches of 8 sees 8 times; the full set is not seen once)
LITTLE_DATA_EVERY = 10
DISTILHUBERT_LITTLE = Student("distilhubert (1/10 data)", "distilhubert", 2, data_every=LITTLE_DATA_EVERY,
                              key="distilhubert_little", family="distilhubert")
DISTILHUBERT_DISC_LITTLE = Student("distilhubert+disc (1/10 data)", "distilhubert", 2, "config.loss.disc_weight=1.0",
                                   data_every=LITTLE_DATA_EVERY, key="distilhubert_disc_little", family="distilhubert")
COLLD_FBANK = Student("colld fbank front-end", "colld_distiller", 2, "config.model.frontend=fbank",
                      needs_frontend=True, key="colld_fbank", family="colld")
COLLD_DEEP_THIN = Student("deep-thin (4 x 128) colld", "colld_distiller", 2, model=DEEP_THIN, key="colld_deep_thin",
                          family="colld")
COLLD_SHALLOW_WIDE = Student("shallow-wide (2 x 192, FFN 524) colld", "colld_distiller", 2, model=SHALLOW_WIDE,
                             key="colld_shallow_wide", family="colld")
DICEHUBERT = Student("dicehubert", "dicehubert", 2, key="dicehubert")
# CoLLD's multilingual setting (issue 22): the teacher pretrained on English + German (TEACHER_MIX), a CoLLD and a
# DistilHuBERT student distilled from it on the mix, and a CoLLD student distilled from it on English only (what the
# German data of the students buys), at the scale's student budget; 2 seeds each, so that their verdicts have a spread
COLLD_MULTILINGUAL = Student("colld multilingual (en+de)", "colld_distiller", 2, corpus="mix", teacher="mix",
                             key="colld_multilingual", family="colld")
DISTILHUBERT_MULTILINGUAL = Student("distilhubert multilingual (en+de)", "distilhubert", 2, corpus="mix",
                                    teacher="mix", key="distilhubert_multilingual", family="distilhubert")
COLLD_EN_MIX_TEACHER = Student("colld english-only (mix teacher)", "colld_distiller", 2, teacher="mix",
                               key="colld_en_mix_teacher", family="colld")
MULTILINGUAL: tuple[Student, ...] = (COLLD_MULTILINGUAL, DISTILHUBERT_MULTILINGUAL, COLLD_EN_MIX_TEACHER)
STUDENTS: tuple[Student, ...] = (DISTILHUBERT, L2L, COLLD, COLLD_DISC, DISTILHUBERT_DISC, DISTILHUBERT_LITTLE,
                                 DISTILHUBERT_DISC_LITTLE, COLLD_FBANK, COLLD_DEEP_THIN,
                                 COLLD_SHALLOW_WIDE, DICEHUBERT, *MULTILINGUAL)


def teacher_corpora(students: list[Student]) -> tuple[str, ...]:
    """The teachers ``students`` need, by corpus: always the English one (the baselines' teacher), and the
    multilingual one when a student is distilled from it or on the mix (``corpus_mix`` then exists)."""
    return ("en", *(["mix"] if any("mix" in (s.teacher, s.corpus) for s in students) else []))


# Which rows get which probe (``run.run_grid``). PR (English): every row. ASR (English): the teachers, fbank, MFCC
# and every student at seed 0, at seeds 0 and 1 those of ``ASR_SEEDS`` (the main comparison, the rows of the
# discriminative-loss and input-distillation verdicts, the multilingual students; the multilingual teacher 2 probe
# seeds, ``ASR_BASELINE_SEEDS``). ST, both directions:
# the teachers, fbank and the main students (CoLLD against DistilHuBERT) and the multilingual students, 2 seeds
# each (their verdicts need a spread; the multilingual teacher 2 probe seeds, for the multilingual gap). German PR
# (``pr_de``, on ``corpus_de``): both teachers and the multilingual students, where the plan has them. A teacher
# is a row only where it exists: the multilingual one where a planned student needs it (``teacher_corpora``).
ASR_BASELINES = (TEACHER.key, "fbank", "mfcc", TEACHER_MIX.key)
# probe seeds (at most the scale's) of the baselines in an ASR verdict: the multilingual gap on English ASR; others: 1
ASR_BASELINE_SEEDS: dict[str, int] = {TEACHER_MIX.key: 2}
# other students: 1 seed; 2 for the rows of the ASR verdicts that need a spread: the discriminative loss at two
# data sizes (DistilHuBERT's rows), input distillation's ASR cost (the Fbank front-end against CoLLD) and the
# multilingual students (CoLLD against DistilHuBERT on the mix, the gap to their teacher)
ASR_SEEDS: dict[str, int] = {COLLD.key: 2, DISTILHUBERT.key: 2, **{s.key: 2 for s in (
    DISTILHUBERT_DISC, DISTILHUBERT_LITTLE, DISTILHUBERT_DISC_LITTLE, COLLD_FBANK, *MULTILINGUAL)}}
ST_BASELINES = (TEACHER.key, "fbank", TEACHER_MIX.key)
ST_BASELINE_SEEDS: dict[str, int] = {TEACHER_MIX.key: 2}  # probe seeds (at most the scale's); others: 1
ST_STUDENTS: tuple[Student, ...] = (DISTILHUBERT, COLLD, *MULTILINGUAL)
ST_SEEDS: dict[str, int] = {COLLD.key: 2, DISTILHUBERT.key: 2, **{s.key: 2 for s in MULTILINGUAL}}  # other ST students: 1 seed
PR_DE_BASELINES = (TEACHER.key, TEACHER_MIX.key)
PR_DE_STUDENTS: tuple[Student, ...] = MULTILINGUAL


def asr_rows(students: list[Student]) -> list[tuple[Student, int]]:
    """The ``(student, distillation seed)`` pairs probed for (English) ASR among ``students``: every student, at
    the seeds of ``ASR_SEEDS`` (2 for the main comparison and the rows of the ASR verdicts), else seed 0."""
    return [(s, seed) for s in students for seed in range(min(s.seeds, ASR_SEEDS.get(s.key, 1)))]


def st_rows(students: list[Student]) -> list[tuple[Student, int]]:
    """The ``(student, distillation seed)`` pairs probed for ST (both directions) among ``students``: those of
    ``ST_STUDENTS`` at the seeds of ``ST_SEEDS`` (2 for the main comparison and the multilingual students, so
    their verdicts have a spread), else seed 0."""
    keys = {s.key for s in ST_STUDENTS}
    return [(s, seed) for s in students if s.key in keys for seed in range(min(s.seeds, ST_SEEDS.get(s.key, 1)))]


def pr_de_rows(students: list[Student]) -> list[tuple[Student, int]]:
    """The ``(student, distillation seed)`` pairs probed for German PR among ``students``: every seed of the
    multilingual students (``PR_DE_STUDENTS``), as for English PR."""
    keys = {s.key for s in PR_DE_STUDENTS}
    return [(s, seed) for s in students if s.key in keys for seed in range(s.seeds)]


@dataclass(frozen=True)
class SweepPoint:
    """One setting of a method's dev sweep (``--stages sweep``): the row ``method`` distilled with ``overrides``.

    The sweep distils each point once (seed 0) at the scale's budget and probes PR; the setting with the best dev
    PER becomes the row of the grid (``sweep.chosen_students``). ``overrides`` "" is the row as planned.
    """

    method: str  # the key of the swept Student
    label: str  # what the sweep table shows, and the suffix of the variant's name
    overrides: str = ""  # extra ``-o`` text (``,,``-joined)


# The sweep (issue 21): CoLLD's assumed paper setting (span masks 0.8 x 10, loss on masked frames only) against
# no mask, a low mask rate, the loss on all frames, and (on the unmasked setting, which trained best in
# docs/colld_options.md's accuracy measurements) instance-normalised targets and negatives away from the positive; DistilHuBERT's learning rate (1e-3 in its config) halved and doubled. Each method's
# first point is its planned row, which a tie keeps.
SWEEP: tuple[SweepPoint, ...] = (  # in the order they run: a sweep cut short has the most telling points
    SweepPoint(COLLD.key, "mask 0.8 x 10, masked frames (assumed paper setting)"),
    SweepPoint(COLLD.key, "no mask", "config.mask.prob=0"),
    SweepPoint(COLLD.key, "mask 0.2 x 10, masked frames", "config.mask.prob=0.2"),
    SweepPoint(COLLD.key, "mask 0.8 x 10, all frames", "config.loss.masked_only=false"),
    SweepPoint(DISTILHUBERT.key, "lr 1e-3 (config)"),
    SweepPoint(DISTILHUBERT.key, "lr 2e-3", "config.optimizer.lr=2.0e-3"),
    SweepPoint(COLLD.key, "no mask, instance-normalised targets", "config.mask.prob=0,,config.teacher.target_norm=instance"),
    SweepPoint(DISTILHUBERT.key, "lr 5e-4", "config.optimizer.lr=5.0e-4"),
    SweepPoint(COLLD.key, "no mask, negatives beyond 2 neighbours", "config.mask.prob=0,,config.loss.exclude_neighbours=2"),
)


@dataclass(frozen=True)
class Claim:
    """A paper claim the grid checks: row ``a`` against row ``b`` on PR PER (``report.compare``)."""

    a: Student | Baseline
    b: Student | Baseline


# the claims, by plan object: renaming a row (its display name) keeps its verdict
CLAIMS: tuple[Claim, ...] = (
    Claim(COLLD, DISTILHUBERT), Claim(COLLD_DISC, COLLD), Claim(DISTILHUBERT_DISC, DISTILHUBERT),
    Claim(DISTILHUBERT_DISC_LITTLE, DISTILHUBERT_LITTLE), Claim(COLLD_DEEP_THIN, COLLD_SHALLOW_WIDE), Claim(COLLD_FBANK, COLLD), Claim(DICEHUBERT, COLLD),
    Claim(COLLD_MULTILINGUAL, DISTILHUBERT_MULTILINGUAL),
)
FRONTEND_SPEED = Claim(COLLD_FBANK, COLLD)  # the Fbank front-end's speed and size against the CNN's
# the papers' own tasks (issue 22), each ``(results.json block, claim)``: input distillation's ASR cost and the
# discriminative loss on ASR (Wang et al.), CoLLD against DistilHuBERT on ASR and ST both ways (CoLLD); in the
# multilingual setting CoLLD against DistilHuBERT (ST both ways, German PR), what the students' German data buys
# (CoLLD on the mix against CoLLD on English, both from the multilingual teacher: ST De->En, German PR) and the
# multilingual gap (the multilingual CoLLD student against its teacher on ST De->En, German PR and English ASR;
# CoLLD against DistilHuBERT on the mix on English ASR too)
TASK_CLAIMS: tuple[tuple[str, Claim], ...] = (
    ("asr", Claim(COLLD, DISTILHUBERT)), ("asr", Claim(COLLD_FBANK, COLLD)), ("asr", Claim(COLLD_DISC, COLLD)),
    ("asr", Claim(DISTILHUBERT_DISC, DISTILHUBERT)), ("asr", Claim(DISTILHUBERT_DISC_LITTLE, DISTILHUBERT_LITTLE)),
    ("st_en_de", Claim(COLLD, DISTILHUBERT)), ("st_de_en", Claim(COLLD, DISTILHUBERT)),
    ("st_de_en", Claim(COLLD_MULTILINGUAL, DISTILHUBERT_MULTILINGUAL)),
    ("st_en_de", Claim(COLLD_MULTILINGUAL, DISTILHUBERT_MULTILINGUAL)),
    ("pr_de", Claim(COLLD_MULTILINGUAL, DISTILHUBERT_MULTILINGUAL)),
    ("st_de_en", Claim(COLLD_MULTILINGUAL, COLLD_EN_MIX_TEACHER)),
    ("pr_de", Claim(COLLD_MULTILINGUAL, COLLD_EN_MIX_TEACHER)),
    ("st_de_en", Claim(COLLD_MULTILINGUAL, TEACHER_MIX)), ("pr_de", Claim(COLLD_MULTILINGUAL, TEACHER_MIX)),
    ("asr", Claim(COLLD_MULTILINGUAL, DISTILHUBERT_MULTILINGUAL)), ("asr", Claim(COLLD_MULTILINGUAL, TEACHER_MIX)),
)

# issue 22's checks that a probe's instrument can learn at all, each ``(results.json block, bound)`` on the
# teacher's test split: ASR WER below 50, ST BLEU of at least 10 each way (the direction: report.METRICS)
INSTRUMENT_CHECKS: tuple[tuple[str, float], ...] = (("asr", 50.0), ("st_en_de", 10.0), ("st_de_en", 10.0))

# The students of the gpu scales: the main comparison, the discriminative loss, input distillation, DiceHuBERT.
GPU_STUDENTS = (DISTILHUBERT.key, COLLD.key, COLLD_DISC.key, COLLD_FBANK.key, DICEHUBERT.key)

# SUPERB's ST model (s2t_transformer, covost2/st.yaml's head) over configs/downstream/st.yaml's small CPU preset
SUPERB_ST_HEAD = (",,config.head.d_model=512,,config.head.nhead=8,,config.head.ffn_dim=2048,,config.head.encoder_layers=3,,"
                  "config.head.decoder_layers=3,,config.head.conv_channels=1024,,config.head.beam=20,,config.head.max_len_b=400")

SCALES: dict[str, Scale] = {
    "full": Scale(
        en_args=("--hours", "10"), de_args=("--hours", "3"),
        teacher_overrides="", teacher_iter2_overrides="",
        student_steps=400, student_batch=8, frontend_steps=300,
        probe_overrides=",,config.data.max_train_utts=2000", probe_seeds=2,
        asr_overrides=",,config.data.max_train_utts=2000", asr_top=3,
        st_overrides=SUPERB_ST_HEAD,
    ),
    # What fits in about two hours of this 2-core machine (the run in docs/results/): the 2 h subset of the
    # 10 h corpus for pretraining (every 5th utterance), teacher iterations 1 and 2 (800 + 1,800 steps), every English student
    # with 3 seeds for the main comparison and 2 for the others, 300 steps each, PR probes on 1,000 training
    # utterances that train until dev stops improving (configs/downstream/pr.yaml: at most 2,000 updates),
    # 2 probe seeds for the baselines. ASR and ST (with the mini heads of configs/downstream/mini/, on two 5 h
    # corpora of the templated grammar) only with --tasks pr,asr,st; the dev sweep and the budget curve with
    # --stages sweep,grid,curves. The multilingual rows are listed too: with them (the committed run names its
    # rows with --students) come the 1 h German corpus, the multilingual teacher on the 2 h English subset + German
    # (same budget as the English teacher) and German PR.
    "reduced": Scale(
        en_args=("--hours", "10"), de_args=("--hours", "1"),  # German only for the multilingual rows
        # iteration 2 of 1,800 steps (iter2.yaml: 600): 2.9 test PER better (68.5 vs 71.4, PR probes at lr 1e-2;
        # bench/experiments/teacher_budget.py, docs/results_history.md "The teacher's budget")
        teacher_overrides=",,config.runner.total_steps=800",
        teacher_iter2_overrides=",,config.runner.total_steps=1800,,config.runner.save_step=600,,config.runner.max_keep=4",
        student_steps=300, student_batch=8, frontend_steps=200,
        # PR probes decode with a moving average of their weights (runner.ema_decay 0.95, chosen on dev over 0.99):
        # with the trained weights' dev-best fbank's probe-seed std on test_unseen was 2.0-2.2 PER, with the average
        # 0.9-1.0 (3 and 2 seeds; docs/superb_protocol.md, "A moving average of the probe's weights"); pr.yaml and
        # the demo keep it off
        probe_overrides=",,config.data.max_train_utts=1000,,config.runner.ema_decay=0.95",
        probe_seeds=2, asr_overrides="", asr_top=0, st_overrides="", pretrain_every=5,
        students=tuple(s.key for s in STUDENTS),  # every row, the multilingual ones included
        asr_config="mini/asr.yaml", st_config="mini/st.yaml", tasks=("pr",),  # --tasks pr,asr,st adds them
        # ST on corpora of the templated grammar (data/synth/grammar.py), 5 h per spoken language: the dictionary's
        # 12k real sentence pairs (16k German word forms) are more than a mini ST head can learn from 10 h. ASR
        # on the English one too: on PR's corpus (the dictionary's 11.7k English words) the teacher's mini ASR
        # probe stayed at 98-101 dev WER for 1,500 updates (docs/superb_protocol.md, "Mini presets")
        st_corpus_args=("--sentences", "grammar", "--hours", "5"), asr_on_st_corpus=True,
        curve_steps=(300, 1200, 3000), curve_seeds=2,  # --stages curves (budgets, each its own run) ...
        curves=False,  # ... instead of probing the intermediate checkpoints of one 300-step run
    ),
    # ``make demo``: about 20 min here. A 1,500-utterance corpus, iteration 1 of the teacher, DistilHuBERT and
    # CoLLD once each, PR probes on 600 training utterances trained until dev stops improving (the preset's
    # early stopping under a 2,000-update cap), no learning curve.
    "demo": Scale(
        en_args=("--utterances", "1500"), de_args=None,
        teacher_overrides=",,config.runner.total_steps=400", teacher_iter2_overrides=None,
        student_steps=200, student_batch=8, frontend_steps=200,
        probe_overrides=",,config.data.max_train_utts=600",
        probe_seeds=1, asr_overrides=None, asr_top=0, st_overrides=None,
        seeds_cap=1, students=(DISTILHUBERT.key, COLLD.key), rtf_utterances=10, curves=False,
    ),
    # The test suite's end-to-end run (tests/test_demo.py): 60 utterances, a teacher that learns its 12 units in
    # 120 steps of 1-2 s crops, 2-step students, 150-update probes.
    "tiny": Scale(
        en_args=("--utterances", "60"), de_args=("--utterances", "40"),
        teacher_overrides=",,config.runner.total_steps=120,,config.runner.save_step=120,,config.runner.log_step=10,,"
                          "config.runner.num_workers=0,,config.runner.progress_bar=false,,config.data.batch_size=8,,"
                          "config.data.crop_min_sec=1.0,,config.data.crop_max_sec=2.0,,config.units.n_clusters=12,,"
                          "config.optimizer.warmup_steps=20",
        teacher_iter2_overrides=None,
        student_steps=2, student_batch=4, frontend_steps=2,
        # s3prl's lr 1e-2 (pr.yaml: 3e-3): a 150-update toy probe must leave CTC's blank plateau quickly
        probe_overrides=",,config.runner.total_steps=150,,config.runner.eval_step=75,,config.runner.batch_size=8,,"
                        "config.optimizer.lr=1.0e-2",
        probe_seeds=1, seeds_cap=1, students=(DISTILHUBERT.key, COLLD.key), rtf_utterances=2,
        # ASR and ST only with --tasks pr,asr,st (a 40-utterance German corpus then for De->En)
        asr_overrides=",,config.runner.total_steps=4,,config.runner.eval_step=4,,config.runner.save_step=4", asr_top=0,
        st_overrides=",,config.runner.total_steps=4,,config.runner.eval_step=4,,config.runner.save_step=4,,"
                     "config.head.beam=2,,config.head.max_len_b=20",
        asr_config="mini/asr.yaml", st_config="mini/st.yaml", tasks=("pr",),
        curve_steps=(2, 4), curve_seeds=1,
    ),
    # One H100 + 16 cores from a cold start (issue 25). Budgets set, NOT yet timed on a GPU: the default English
    # corpus and a 1 h German one (ST De->En) synthesised on every core, teacher iterations 1 and 2 (2,000 and
    # 1,500 updates of 32 crops, against 800 + 600 of 8 on CPU), the five main students once each (800 steps of
    # 32), probed with SUPERB's own heads (PR linear, ASR 2 x BiLSTM 1024, ST s2t transformer 3 + 3 x 512) on
    # short schedules. Every stage is reused, so a call cut short continues on the next call (same machine).
    "gpu": Scale(
        en_args=(), de_args=("--hours", "1"), synth_workers=0,
        teacher_overrides=",,config.runner.total_steps=2000,,config.runner.save_step=1000,,config.data.batch_size=32,,"
                          "config.runner.num_workers=8,,config.runner.progress_bar=false",
        teacher_iter2_overrides=",,config.runner.total_steps=1500,,config.runner.save_step=750,,"
                                "config.data.batch_size=32,,config.runner.num_workers=8,,config.runner.progress_bar=false",
        student_steps=800, student_batch=32, frontend_steps=600,
        probe_overrides=",,config.runner.total_steps=1000,,config.runner.eval_step=250",
        probe_seeds=1,
        asr_overrides=",,config.runner.total_steps=1500,,config.runner.eval_step=500",
        asr_top=0,
        st_overrides=",,config.runner.total_steps=1500,,config.runner.eval_step=500" + SUPERB_ST_HEAD,
        seeds_cap=1, students=GPU_STUDENTS, rtf_utterances=10, curves=False, tasks=TASKS,
    ),
    # The gpu scale's stages and code path at toy size, on CPU (tests/test_replicate_tasks.py): tiny corpora in
    # both languages, both teacher iterations, the five main students for 2 steps, and PR / ASR / ST probes of a
    # few updates with the mini heads (configs/downstream/mini/).
    "gpu-tiny": Scale(
        en_args=("--utterances", "40"), de_args=("--utterances", "40"), synth_workers=0,
        teacher_overrides=",,config.runner.total_steps=15,,config.runner.save_step=15,,config.runner.log_step=10,,"
                          "config.runner.num_workers=0,,config.runner.progress_bar=false,,config.data.batch_size=8,,"
                          "config.data.crop_min_sec=1.0,,config.data.crop_max_sec=2.0,,config.units.n_clusters=8,,"
                          "config.optimizer.warmup_steps=5",
        teacher_iter2_overrides=",,config.runner.total_steps=5,,config.runner.save_step=5,,config.runner.log_step=5,,"
                                "config.runner.num_workers=0,,config.runner.progress_bar=false,,config.data.batch_size=8,,"
                                "config.data.crop_min_sec=1.0,,config.data.crop_max_sec=2.0,,config.units.n_clusters=8",
        student_steps=2, student_batch=4, frontend_steps=2,
        probe_overrides=",,config.runner.total_steps=6,,config.runner.eval_step=6,,config.runner.batch_size=8",
        probe_seeds=1,
        asr_overrides=",,config.runner.total_steps=4,,config.runner.eval_step=4,,config.runner.save_step=4",
        asr_top=0,
        st_overrides=",,config.runner.total_steps=4,,config.runner.eval_step=4,,config.runner.save_step=4,,"
                     "config.head.beam=2,,config.head.max_len_b=20",
        asr_config="mini/asr.yaml", st_config="mini/st.yaml",
        seeds_cap=1, students=GPU_STUDENTS, rtf_utterances=2, curves=False, tasks=TASKS, probe_retries=0,
    ),
}


def plan_students(scale: Scale) -> list[Student]:
    """The students this scale distils, with seeds capped by the scale."""
    chosen = [s for s in STUDENTS if scale.students is None or s.key in scale.students]
    if scale.seeds_cap is not None:
        chosen = [Student(**{**asdict(s), "seeds": min(s.seeds, scale.seeds_cap)}) for s in chosen]
    return chosen


def student_order(students: list[Student]) -> list[tuple[Student, int]]:
    """``(student, seed)`` in the order they are run.

    Every seed of the main comparison (the students with ``curve``: CoLLD against DistilHuBERT) comes
    first, then seed 0 of every other student, then their seed 1, ...; so a grid cut short keeps the
    seeds of the main comparison and has every other method at least once before any extra seed.
    """
    groups = ([s for s in students if s.curve], [s for s in students if not s.curve])
    return [(s, seed) for group in groups for seed in range(max((s.seeds for s in group), default=0))
            for s in group if seed < s.seeds]
