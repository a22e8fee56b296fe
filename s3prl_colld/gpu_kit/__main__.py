"""``python -m s3prl_colld.gpu_kit pack|install|run DIR``: the GPU kit's command line (see docs/gpu_kit.md).

    python -m s3prl_colld.gpu_kit pack .gpu_kit                # here, with network: <= 64 MiB of wheels + synthesisers
    python -m s3prl_colld.gpu_kit install .gpu_kit             # on the GPU machine, no network
    python -m s3prl_colld.gpu_kit run .gpu_kit -- --scale ...  # python -m s3prl_colld.replicate ... with the kit

Expected errors print as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from s3prl_colld.gpu_kit.install import KitError, environment, install


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m s3prl_colld.gpu_kit", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="fill DIR with wheels and synthesisers for the GPU machine (needs network)")
    pk.add_argument("dir", type=Path)
    pk.add_argument("--python-version", default=None,
                    help="the Python the kit is for, X.Y (default: the GPU image's, 3.12)")
    pk.add_argument("--cache", type=Path, default=None,
                    help="downloads and built wheels are kept here (default $S3PRL_COLLD_CACHE/gpu_kit or "
                         "~/.cache/s3prl_colld/gpu_kit)")
    pk.add_argument("--max-mib", type=float, default=64.0, help="fail when the kit is bigger (default 64)")
    ins = sub.add_parser("install", help="install DIR's wheels with no network and unpack its synthesisers")
    ins.add_argument("dir", type=Path)
    ins.add_argument("--target", type=Path, default=None,
                     help="install the wheels into this folder (pip --target) instead of the running environment")
    rn = sub.add_parser("run", help="python -m s3prl_colld.replicate ARGS in the installed kit's environment")
    rn.add_argument("dir", type=Path)
    rn.add_argument("args", nargs=argparse.REMAINDER, help="-- then replicate's arguments")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "pack":
            from s3prl_colld.gpu_kit.image import IMAGE_PYTHON
            from s3prl_colld.gpu_kit.pack import default_cache, pack
            from s3prl_colld.gpu_kit.tts import TtsPackError
            from s3prl_colld.gpu_kit.wheels import PackError

            try:
                pack(args.dir, args.python_version or IMAGE_PYTHON, args.cache or default_cache(),
                     int(args.max_mib * 2**20))
            except (PackError, TtsPackError) as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
        elif args.command == "install":
            install(args.dir, args.target)
            print(f"installed; for a shell: source {args.dir.resolve() / 'env.sh'}")
        else:
            rest = args.args[1:] if args.args[:1] == ["--"] else args.args
            env = environment(args.dir)
            root = Path(__file__).resolve().parents[2]
            if (root / "setup.py").is_file():  # run from a checkout: every process uses its code, not the wheel's
                env["PYTHONPATH"] = str(root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            cmd = [sys.executable, "-m", "s3prl_colld.replicate", *rest]
            return subprocess.run(cmd, env=env, check=False).returncode
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
