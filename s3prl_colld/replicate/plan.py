"""The grid's plan: its rows (students), its budgets (scales) and the claims it checks; data only, no work.

Every method of ``../shared/docs/methods.md`` is distilled from one tiny HuBERT
teacher at one budget (steps, data, batch), then probed SUPERB-style
(``stages``, ``run``). ``--scale`` picks the budget: ``full`` is the whole
grid, ``reduced`` what fits in about two hours here (the run in
``docs/results/``), ``demo`` the grid of ``make demo`` (about 15 min) and
``tiny`` the test suite's end-to-end run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

PR_SPLITS = ("test", "test_noisy", "test_unseen")


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
    corpus: str = "en"  # en | mix (English + German, the CoLLD multilingual setting)
    needs_frontend: bool = False  # stage 2 of input distillation: needs the Fbank front-end of stage 1
    curve: bool = False  # probe intermediate checkpoints too (learning curve)
    key: str = ""  # required: the row's identity (see above)

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError(f"Student {self.name!r} needs a key (its identity in scales, claims and results)")


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
    asr_overrides: str | None
    asr_top: int  # ASR for this many best students
    st_overrides: str | None
    seeds_cap: int | None = None  # at most this many distillation seeds per student
    students: tuple[str, ...] | None = None  # keys of the students to run (None: all of STUDENTS)
    rtf_utterances: int = 20
    curves: bool = True  # probe intermediate checkpoints of the main comparison (learning curve)
    pretrain_every: int = 1  # teacher and students train on every N-th training utterance (1: all)


# Deep-thin against shallow-wide at equal parameters (Wang et al. at mini scale): 1.140 M and 1.139 M.
DEEP_THIN = {"layers": 4, "dim": 128, "ffn_dim": 512, "heads": 4}
SHALLOW_WIDE = {"layers": 2, "dim": 192, "ffn_dim": 524, "heads": 4}

DISTILHUBERT = Student("distilhubert", "distilhubert", 3, curve=True, key="distilhubert")
L2L = Student("l2l", "l2l_distiller", 2, key="l2l")
COLLD = Student("colld", "colld_distiller", 3, curve=True, key="colld")
COLLD_DISC = Student("colld+disc", "colld_distiller", 2, "config.loss.disc_weight=1.0", key="colld_disc")
DISTILHUBERT_DISC = Student("distilhubert+disc", "distilhubert", 2, "config.loss.disc_weight=1.0",
                            key="distilhubert_disc")
COLLD_FBANK = Student("colld fbank front-end", "colld_distiller", 2, "config.model.frontend=fbank",
                      needs_frontend=True, key="colld_fbank")
COLLD_DEEP_THIN = Student("deep-thin (4 x 128) colld", "colld_distiller", 2, model=DEEP_THIN, key="colld_deep_thin")
COLLD_SHALLOW_WIDE = Student("shallow-wide (2 x 192, FFN 524) colld", "colld_distiller", 2, model=SHALLOW_WIDE,
                             key="colld_shallow_wide")
DICEHUBERT = Student("dicehubert", "dicehubert", 2, key="dicehubert")
COLLD_MULTILINGUAL = Student("colld multilingual (en+de)", "colld_distiller", 1, corpus="mix",
                             key="colld_multilingual")

STUDENTS: tuple[Student, ...] = (DISTILHUBERT, L2L, COLLD, COLLD_DISC, DISTILHUBERT_DISC, COLLD_FBANK, COLLD_DEEP_THIN,
                                 COLLD_SHALLOW_WIDE, DICEHUBERT, COLLD_MULTILINGUAL)


@dataclass(frozen=True)
class Claim:
    """A paper claim the grid checks: row ``a`` against row ``b`` on PR PER (``report.compare``)."""

    a: Student
    b: Student


# the claims, by plan object: renaming a row (its display name) keeps its verdict
CLAIMS: tuple[Claim, ...] = (
    Claim(COLLD, DISTILHUBERT), Claim(COLLD_DISC, COLLD), Claim(DISTILHUBERT_DISC, DISTILHUBERT),
    Claim(COLLD_DEEP_THIN, COLLD_SHALLOW_WIDE), Claim(COLLD_FBANK, COLLD), Claim(DICEHUBERT, COLLD),
)
FRONTEND_SPEED = Claim(COLLD_FBANK, COLLD)  # the Fbank front-end's speed and size against the CNN's

SCALES: dict[str, Scale] = {
    "full": Scale(
        en_args=("--hours", "10"), de_args=("--hours", "3"),
        teacher_overrides="", teacher_iter2_overrides="",
        student_steps=400, student_batch=8, frontend_steps=300,
        probe_overrides=",,config.data.max_train_utts=2000", probe_seeds=2,
        asr_overrides=",,config.data.max_train_utts=2000", asr_top=3,
        st_overrides="",
    ),
    # What fits in about two hours of this 2-core machine (the run in docs/results/): the 2 h subset of the
    # 10 h corpus for pretraining (every 5th utterance), teacher iterations 1 and 2, every English student
    # with 3 seeds for the main comparison and 2 for the others, 300 steps each, PR probes on 1,000 training
    # utterances that train until dev stops improving (configs/downstream/pr.yaml: at most 2,000 updates),
    # 2 probe seeds for the baselines; no German, ASR or ST.
    "reduced": Scale(
        en_args=("--hours", "10"), de_args=None,
        teacher_overrides=",,config.runner.total_steps=800", teacher_iter2_overrides="",
        student_steps=300, student_batch=8, frontend_steps=200,
        probe_overrides=",,config.data.max_train_utts=1000",
        probe_seeds=2, asr_overrides=None, asr_top=0, st_overrides=None, curves=True, pretrain_every=5,
        students=tuple(s.key for s in STUDENTS if s is not COLLD_MULTILINGUAL),
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
        en_args=("--utterances", "60"), de_args=None,
        teacher_overrides=",,config.runner.total_steps=120,,config.runner.save_step=120,,config.runner.log_step=10,,"
                          "config.runner.num_workers=0,,config.runner.progress_bar=false,,config.data.batch_size=8,,"
                          "config.data.crop_min_sec=1.0,,config.data.crop_max_sec=2.0,,config.units.n_clusters=12,,"
                          "config.optimizer.warmup_steps=20",
        teacher_iter2_overrides=None,
        student_steps=2, student_batch=4, frontend_steps=2,
        probe_overrides=",,config.runner.total_steps=150,,config.runner.eval_step=75,,config.runner.batch_size=8",
        probe_seeds=1, asr_overrides=None, asr_top=0, st_overrides=None,
        seeds_cap=1, students=(DISTILHUBERT.key, COLLD.key), rtf_utterances=2,
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
