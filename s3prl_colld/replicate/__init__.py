"""``python -m s3prl_colld.replicate --out DIR``: the mini replication's results grid.

Every method of ``../shared/docs/methods.md`` is distilled from one tiny HuBERT
teacher (the multilingual rows from a second one, pretrained on English +
German) at one budget (steps, data, batch), then probed SUPERB-style:

1. corpora  - English (and German, for the multilingual rows and ST De->En)
              from :mod:`s3prl_colld.data.synth`; ``corpus_mix`` (the English
              pretraining utterances + German) for the multilingual rows;
2. teachers - ``run_pretrain.py -u hubert_tiny`` (iteration 1, then iteration 2)
              on English, and the same on the mix where a planned row needs
              it (``teacher_mix``: CoLLD's multilingual setting);
3. students - every distillation task, several seeds each (``plan.STUDENTS``);
4. probes   - PR (dev-best checkpoint, then ``test``, ``test_noisy`` and
              ``test_unseen``) for every student seed and the baselines
              (teachers, fbank, MFCC, a random-init teacher); German PR for
              the teachers and the multilingual students; ASR (same test
              splits) for the teachers, fbank, MFCC and every student
              (CoLLD and DistilHuBERT with 2 seeds); ST En->De and De->En for
              the teachers, fbank, the main and the multilingual students
              (``plan.asr_rows``, ``plan.st_rows``, ``plan.pr_de_rows``).
              ``--tasks pr,asr,st`` picks the probe tasks (default: the
              scale's); ASR and ST run on the students of the PR grid, and a
              finished probe of any task is reused;
5. measures - parameters and CPU real-time factor of each upstream;
6. report   - ``DIR/results.md``, ``DIR/results.json`` and two plots.

Each stage writes a ``DONE`` marker (or its result file) and is skipped when
run again; an unfinished pretraining run resumes from its last checkpoint, an
unfinished probe starts again (it is short). ``--scale`` picks the budget:
``full`` is the whole grid, ``reduced`` what fits in about two hours here (the
run in ``docs/results/``; ``--tasks pr,asr,st`` adds ASR and ST with the small
heads of ``configs/downstream/mini/``), ``demo`` the grid of ``make demo``
(about 15 min), ``tiny`` the test suite's end-to-end run, ``gpu`` one H100 with
SUPERB's own heads (docs/gpu_kit.md) and ``gpu-tiny`` the gpu scale's stages at
toy size on CPU (tests/test_replicate_tasks.py). ``--report-only`` on a folder
holding only a ``results.json`` (e.g. a copy of ``docs/results/grid_reduced``)
renders it again.

Modules, one job each: ``plan`` (rows, scales, claims: data only), ``stages``
(``Grid``: run or reuse one stage), ``measures`` (parameters, real-time factor,
mean and spread), ``run`` (the grid stage by stage, and ``main``) and ``report``
(``results.md`` with the verdicts, ``results.json``, the plots).
"""

from s3prl_colld.replicate.measures import mean_std, measure_upstream
from s3prl_colld.replicate.plan import (CLAIMS, PR_SPLITS, SCALES, STUDENTS, Claim, Scale, Student, plan_students,
                                        student_order)
from s3prl_colld.replicate.report import compare, report, verdicts
from s3prl_colld.replicate.run import main, run_grid, upstream_of
from s3prl_colld.replicate.stages import Grid, model_overrides, pretrain, slug, write_mixed_corpus

__all__ = ["CLAIMS", "PR_SPLITS", "SCALES", "STUDENTS", "Claim", "Grid", "Scale", "Student", "compare", "main",
           "mean_std", "measure_upstream", "model_overrides", "plan_students", "pretrain", "report", "run_grid",
           "slug", "student_order", "upstream_of", "verdicts", "write_mixed_corpus"]
