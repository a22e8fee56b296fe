"""Pack test predictions into SUPERB's ``predict.zip`` (the layout of s3prl's ``submit/submit.py``).

``python -m s3prl_colld.downstream.submit --pr result/downstream/PR_RUN --asr result/downstream/ASR_RUN
--output_dir submission`` writes ``submission/predict/{pr_public,asr_public,st_public}/predict.*`` and
``submission/predict.zip``. Each run folder must hold the test predictions of
``run_downstream.py -m evaluate -e .../dev-best.ckpt -t test``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Sequence

# task flag -> (prediction file in the run folder, folder and file name in the zip)
LAYOUT = {
    "pr": ("test-hyp.ark", "pr_public", "predict.ark"),
    "asr": ("test-hyp.ark", "asr_public", "predict.ark"),
    "st": ("output-st-test.tsv", "st_public", "predict.tsv"),
}


def pack(runs: dict[str, Path], output_dir: Path) -> Path:
    """Copy each task's test predictions into ``output_dir/predict/`` and zip it; returns the zip's path.

    Raises:
        FileNotFoundError: a run folder lacks its test predictions (says which command makes them).
    """
    if not runs:
        raise ValueError("nothing to pack: give at least one of --pr, --asr, --st")
    predict = output_dir / "predict"
    for task, run in runs.items():
        src_name, folder, dst_name = LAYOUT[task]
        src = Path(run) / src_name
        if not src.is_file():
            raise FileNotFoundError(f"{src} not found: run `python run_downstream.py -m evaluate -e "
                                    f"{Path(run) / 'dev-best.ckpt'} -t test` first")
        (predict / folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, predict / folder / dst_name)
    zip_path = output_dir / "predict.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(predict.rglob("*")):
            zf.write(path, path.relative_to(output_dir).as_posix())
    return zip_path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m s3prl_colld.downstream.submit", description=__doc__.split("\n")[0])
    for task in LAYOUT:
        p.add_argument(f"--{task}", help=f"run folder of the {task} task (holds {LAYOUT[task][0]})")
    p.add_argument("--output_dir", required=True)
    args = p.parse_args(argv)
    runs = {t: Path(getattr(args, t)) for t in LAYOUT if getattr(args, t)}
    try:
        zip_path = pack(runs, Path(args.output_dir))
    except (FileNotFoundError, ValueError) as err:
        print(f"submit: error: {err}", file=sys.stderr)
        return 2
    print(f"packed {', '.join(f'{t}_public' for t in runs)} into {zip_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
