"""Fill a kit folder: wheels for the GPU's Python and the synthesisers, at most ``max_bytes`` in all.

Layout of the folder (see docs/gpu_kit.md)::

    manifest.json   what was packed: Python, wheels (sha256), the synthesisers' packages, sizes
    wheels/         s3prl_colld and the dependencies the image lacks (:mod:`.wheels`)
    tts.tar.gz      espeak-ng, flite, t2p, their libraries and data, trans-de-en (:mod:`.tts`)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

from s3prl_colld.gpu_kit.tts import pack_tts
from s3prl_colld.gpu_kit.wheels import PackError, Target, WheelCache, build_own_wheel, collect

MAX_BYTES = 64 * 2**20  # what travels to the GPU machine besides the tracked files (the device tool's limit)
OURS = ("manifest.json", "wheels", "tts.tar.gz", "tts", "installed.json", "env.sh")


def default_cache() -> Path:
    """``$S3PRL_COLLD_CACHE/gpu_kit``, else ``$XDG_CACHE_HOME`` (or ``~/.cache``) ``/s3prl_colld/gpu_kit``."""
    if os.environ.get("S3PRL_COLLD_CACHE"):
        return Path(os.environ["S3PRL_COLLD_CACHE"]) / "gpu_kit"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "s3prl_colld" / "gpu_kit"


def repo_root() -> Path:
    """The source checkout holding this package (our wheel is built from it)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "setup.py").is_file():
        raise PackError(f"{root} has no setup.py: pack from a source checkout of s3prl-colld")
    return root


def prepare(kit: Path) -> None:
    """Empty ``kit`` of an earlier kit's files; refuse a folder that holds anything else."""
    if kit.exists():
        other = [p.name for p in kit.iterdir() if p.name not in OURS]
        if other:
            raise PackError(f"{kit} holds files that are not a kit's ({', '.join(sorted(other)[:5])}): "
                            "pack into an empty or new folder")
        for name in OURS:
            path = kit / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    (kit / "wheels").mkdir(parents=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _commit(repo: Path) -> str | None:
    got = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"], capture_output=True,
                         text=True, check=False)
    return got.stdout.strip() or None


def pack(kit: Path, python_version: str, cache: Path, max_bytes: int = MAX_BYTES,
         log: Callable[[str], None] = print) -> dict:
    """Pack the kit into ``kit`` for CPython ``python_version``; returns the manifest.

    Raises:
        PackError: a wheel or package that cannot be had, or a kit over ``max_bytes``
            (the folder is left as written, for a look at what is big).
    """
    t0 = time.perf_counter()
    kit = kit.resolve()
    prepare(kit)
    target, repo = Target(python_version), repo_root()
    own = build_own_wheel(repo, kit / "wheels")
    log(f"built {own.name}")
    deps, warnings = collect(own, target, WheelCache(cache / "wheels"), log)
    for w in deps:
        shutil.copyfile(w, kit / "wheels" / w.name)
    for warning in warnings:
        log(f"warning: {warning}")
    tts = pack_tts(cache, kit / "tts.tar.gz", log)
    wheels = sorted((kit / "wheels").glob("*.whl"))
    manifest = {
        "python": python_version, "platform": "linux x86-64 (manylinux)", "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "source": _commit(repo), "warnings": warnings,
        "wheels": [{"file": w.name, "bytes": w.stat().st_size, "sha256": _sha256(w)} for w in wheels],
        "tts": {"file": "tts.tar.gz", "bytes": (kit / "tts.tar.gz").stat().st_size, **tts},
    }
    total = sum(w.stat().st_size for w in wheels) + manifest["tts"]["bytes"]
    manifest["total_bytes"] = total + 4096  # the manifest itself, rounded up
    (kit / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    total = sum(p.stat().st_size for p in kit.rglob("*") if p.is_file())
    manifest["total_bytes"] = total
    log(f"kit {kit}: {total / 2**20:.1f} MiB ({len(wheels)} wheels {sum(w.stat().st_size for w in wheels) / 2**20:.1f} "
        f"MiB, synthesisers {manifest['tts']['bytes'] / 2**20:.1f} MiB) in {time.perf_counter() - t0:.0f} s")
    if total > max_bytes:
        biggest = sorted(kit.rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)[-5:]
        raise PackError(f"the kit is {total / 2**20:.1f} MiB, over the limit of {max_bytes / 2**20:.0f} MiB; biggest: "
                        + ", ".join(f"{p.name} {p.stat().st_size / 2**20:.1f} MiB" for p in reversed(biggest)))
    return manifest
