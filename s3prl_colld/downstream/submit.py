"""Pack test predictions into SUPERB's ``predict.zip``, as s3prl's ``s3prl/submit/submit.py`` does.

Same flags, same source files in each experiment folder, same tree::

    python -m s3prl_colld.downstream.submit --pr result/downstream/PR_RUN \\
        --asr_no_lm result/downstream/ASR_RUN --st result/downstream/ST_RUN --output_dir submission

writes ``submission/predict/{pr_public,asr_public,st_public}/predict.*`` (byte copies
of the source files) and ``submission/predict.zip`` holding ``predict/`` and
everything under it, folders included, as ``zip -r predict.zip predict/`` does.
Every flag of s3prl's packer is accepted (``--sid``, ``--ks``, ... for tasks this
project does not train). Each folder must hold what s3prl's ``-m evaluate`` writes,
e.g. ``run_downstream.py -m evaluate -e .../dev-best.ckpt -t test``:

- PR: ``test-hyp.ark``; ASR: ``test-clean-noLM-hyp.ark`` (an ASR run of ours on a
  corpus whose test split is not ``test-clean`` writes ``SPLIT-noLM-hyp.ark``; when
  one ``SPLIT-results.json`` of an ASR evaluation names it, that file is packed instead);
  ST: ``output-st-test.tsv``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path
from typing import IO, NamedTuple, Sequence

from s3prl_colld.checkpoint import CheckpointError, write_atomic


class Entry(NamedTuple):
    """One flag of s3prl's packer: copy ``source`` (in the experiment folder) to ``predict/TASK/target``."""

    flag: str
    task: str
    source: str
    target: str


# s3prl's submit.py, in its order
ENTRIES: tuple[Entry, ...] = (
    Entry("pr", "pr_public", "test-hyp.ark", "predict.ark"),
    Entry("sid", "sid_public", "test_predict.txt", "predict.txt"),
    Entry("ks", "ks_public", "test_predict.txt", "predict.txt"),
    Entry("ic", "ic_public", "test_predict.csv", "predict.csv"),
    *(Entry(f"er_fold{i}", f"er_fold{i}_public", f"test_fold{i}_predict.txt", "predict.txt") for i in range(1, 6)),
    Entry("asr_no_lm", "asr_public", "test-clean-noLM-hyp.ark", "predict.ark"),
    Entry("asr_with_lm", "asr_lm_public", "test-clean-LM-hyp.ark", "predict.ark"),
    Entry("qbe", "qbe_public", "benchmark.stdlist.xml", "benchmark.stdlist.xml"),
    Entry("sf", "sf_public", "test-hyp.ark", "predict.ark"),
    Entry("sv", "sv_public", "test_predict.txt", "predict.txt"),
    Entry("sd", "sd_public", "scoring/predictions", "scoring/predictions"),  # a folder, plus frame_shift if present
    Entry("se", "se_public", "test_metrics.txt", "metrics.txt"),
    Entry("ss", "ss_public", "test_metrics.txt", "metrics.txt"),
    Entry("st", "st_public", "output-st-test.tsv", "predict.tsv"),
)
BY_FLAG = {e.flag: e for e in ENTRIES}


def source_file(entry: Entry, expdir: Path) -> Path:
    """The file (``sd``: folder) to pack from ``expdir``.

    Raises:
        FileNotFoundError: it is missing (says which command writes it).
    """
    src = expdir / entry.source
    if entry.flag == "sv":
        src = src.resolve()
    if entry.flag == "asr_no_lm" and not src.is_file():  # our ASR run on a corpus without a test-clean split
        found = our_asr_test_predictions(expdir)
        if found is not None:
            return found
    found = src.is_dir() if entry.flag == "sd" else src.is_file()
    if not found:
        raise FileNotFoundError(f"{src} not found: run `python run_downstream.py -m evaluate -e "
                                f"{expdir / 'dev-best.ckpt'} -t test` first (--{entry.flag} {expdir})")
    return src


def our_asr_test_predictions(expdir: Path) -> Path | None:
    """``SPLIT-noLM-hyp.ark`` of the one test split our ``-m evaluate`` recorded in ``SPLIT-results.json``, or None."""
    found = []
    for results in sorted(expdir.glob("*-results.json")):
        try:
            summary = json.loads(results.read_text())
        except ValueError:
            continue
        split = summary.get("split")
        if summary.get("task") == "asr" and split and (expdir / f"{split}-noLM-hyp.ark").is_file():
            found.append(expdir / f"{split}-noLM-hyp.ark")
    return found[0] if len(found) == 1 else None


def zip_tree(output_dir: Path, folder: str = "predict") -> Path:
    """``cd output_dir && zip -r predict.zip predict/``: every folder and file under ``folder``, folders included.

    Written atomically (``checkpoint.write_atomic``: a temp file renamed into place), with the permissions
    ``zip`` gives a new file (0666 less the umask, e.g. 0644), not the temp file's 0600.
    """

    def write(f: IO[bytes]) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
            for root, dirs, files in os.walk(output_dir / folder):
                dirs.sort()
                base = Path(root)
                zf.write(base, base.relative_to(output_dir).as_posix() + "/")
                for name in sorted(files):
                    zf.write(base / name, (base / name).relative_to(output_dir).as_posix())

    return write_atomic(output_dir / "predict.zip", write)


def pack(runs: dict[str, Path], output_dir: Path) -> Path:
    """Copy each flag's predictions into ``output_dir/predict/`` and zip that folder; returns the zip's path.

    ``runs`` maps s3prl flags (``pr``, ``asr_no_lm``, ``st``, ...) to experiment folders.
    Every source is checked before anything is written.

    Raises:
        ValueError: no flag, or an unknown one.
        FileNotFoundError: a folder lacks its predictions (says which command makes them).
    """
    if not runs:
        raise ValueError("nothing to pack: give at least one of " + ", ".join(f"--{e.flag}" for e in ENTRIES))
    unknown = sorted(set(runs) - set(BY_FLAG))
    if unknown:
        raise ValueError(f"unknown task flag(s) {unknown}: s3prl's are {', '.join(BY_FLAG)}")
    chosen = [(e, source_file(e, Path(runs[e.flag]))) for e in ENTRIES if e.flag in runs]
    predict = output_dir / "predict"
    predict.mkdir(parents=True, exist_ok=True)
    for entry, src in chosen:
        dst = predict / entry.task / entry.target
        dst.parent.mkdir(parents=True, exist_ok=True)
        if entry.flag == "sd":
            shutil.copytree(src, dst, dirs_exist_ok=True)
            if (Path(runs["sd"]) / "frame_shift").is_file():
                shutil.copyfile(Path(runs["sd"]) / "frame_shift", predict / entry.task / "frame_shift")
        else:
            shutil.copyfile(src, dst)
        print(f"{entry.task} is included in the submission and will be scored after submitted.")
    er = [e.task for e, _ in chosen if e.flag.startswith("er_fold")]
    if 0 < len(er) < 5:
        print(f"[Warning] - {er} are included but only in {len(er)} folds. er_public will NOT be scored. "
              "er_public will be scored only when all the 5 folds are submitted.")
    return zip_tree(output_dir)


def parser() -> argparse.ArgumentParser:
    """s3prl's ``submit.py`` flags (and ``--asr``, our earlier name of ``--asr_no_lm``)."""
    p = argparse.ArgumentParser(prog="python -m s3prl_colld.downstream.submit", description=__doc__.split("\n")[0])
    for e in ENTRIES:
        names = [f"--{e.flag}", "--asr"] if e.flag == "asr_no_lm" else [f"--{e.flag}"]
        p.add_argument(*names, dest=e.flag, metavar="EXPDIR", help=f"{e.task}: packs EXPDIR/{e.source}")
    p.add_argument("--output_dir", required=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    runs = {e.flag: Path(getattr(args, e.flag)) for e in ENTRIES if getattr(args, e.flag)}
    try:
        zip_path = pack(runs, Path(args.output_dir))
    except (FileNotFoundError, ValueError, CheckpointError) as err:  # CheckpointError: output_dir not writable
        print(f"submit: error: {err}", file=sys.stderr)
        return 2
    tasks = [e.task for e in ENTRIES if e.flag in runs]
    print(f"Process {len(tasks)} tasks: {' '.join(tasks)} -> {zip_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
