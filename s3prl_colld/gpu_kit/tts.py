"""The kit's synthesisers: espeak-ng, flite (and its ``t2p``) with their data, from Debian's packages.

Packing side only. ``apt-get download`` fetches the packages, ``dpkg -x``
unpacks them into a staging folder, and the folder becomes a tree that runs
from anywhere without installation::

    bin/espeak-ng, bin/flite, bin/t2p       shell wrappers (these go on PATH)
    usr/bin/{espeak-ng,flite,t2p}           Debian's executables
    lib/*.so.N                              every shared library they load except glibc's, under its soname
    usr/lib/x86_64-linux-gnu/espeak-ng-data espeak-ng's data (found through ESPEAK_DATA_PATH)
    usr/share/trans/de-en                   trans-de-en's dictionary (the corpus's sentences)

The libraries are the closure that ``ldd`` reports for the executables (with
the tree's ``lib`` first on ``LD_LIBRARY_PATH``): espeak-ng's audio layer
(libpcaudio) alone pulls in PulseAudio, ALSA, libsndfile and X11's client
libraries, which a bare GPU image lacks. Each library missing from the tree is
traced to its Debian package (``dpkg -S``), which is then downloaded and
unpacked too, until nothing outside glibc comes from the system. The wrappers
set ``LD_LIBRARY_PATH`` and ``ESPEAK_DATA_PATH`` for the synthesiser's process
only, so that nothing else (Python, CUDA) sees Debian's libraries.

The tree travels as ``tts.tar.gz`` (about 30 MB; xz would save 5 MB but takes
minutes on two cores) and is cached, keyed by the packages and this code.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

from s3prl_colld.gpu_kit.install import GLIBC_SONAMES, check_tts, glibc_needed, ldd_outside

PACKAGES = ("espeak-ng", "libespeak-ng1", "espeak-ng-data", "libpcaudio0", "libsonic0", "flite", "libflite1",
            "trans-de-en")
EXECUTABLES = ("espeak-ng", "flite", "t2p")
KEEP = ("usr/lib/x86_64-linux-gnu/espeak-ng-data", "usr/share/trans/de-en")
MULTIARCH = "usr/lib/x86_64-linux-gnu"

WRAPPER = """#!/bin/sh
# {name} of the GPU kit (s3prl_colld.gpu_kit): Debian's executable with the kit's libraries and data.
case $0 in */*) bin=${{0%/*}} ;; *) bin=. ;; esac
LD_LIBRARY_PATH="$bin/../lib${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" ESPEAK_DATA_PATH="$bin/../{multiarch}" \\
    exec "$bin/../usr/bin/{name}" "$@"
"""


class TtsPackError(RuntimeError):
    """The synthesisers cannot be packed (the message says what to do)."""


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    got = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if got.returncode != 0:
        raise TtsPackError(f"`{' '.join(cmd)}` failed ({got.returncode}): {got.stderr.strip()[-1500:]}")
    return got.stdout


def download_debs(packages: list[str], folder: Path, log: Callable[[str], None]) -> list[Path]:
    """``apt-get download`` each package into ``folder`` unless a .deb of it is already there."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise TtsPackError("packing the synthesisers needs Debian's apt-get and dpkg (pack on Debian/Ubuntu)")
    folder.mkdir(parents=True, exist_ok=True)

    def cached(pkg: str) -> list[Path]:
        return sorted(folder.glob(f"{pkg.split(':')[0]}_*.deb"))

    missing = [pkg for pkg in packages if not cached(pkg)]
    if missing:  # one apt-get call: a call per package costs a second or two each
        log(f"apt-get download {' '.join(missing)}")
        _run(["apt-get", "download", *missing], cwd=folder)
    out = []
    for pkg in packages:
        found = cached(pkg)
        if not found:
            raise TtsPackError(f"apt-get download {pkg} wrote no {pkg.split(':')[0]}_*.deb into {folder}")
        out.append(found[-1])
    return out


def _owner(soname: str) -> str:
    """The Debian package (``name:arch``) that holds this machine's copy of a library."""
    got = subprocess.run(["dpkg", "-S", f"*/{soname}"], capture_output=True, text=True, check=False)
    if got.returncode != 0 or ":" not in got.stdout:
        raise TtsPackError(f"{soname} is needed by the synthesisers, but no installed Debian package holds it: "
                           "install espeak-ng and flite here (apt-get install espeak-ng flite) and pack again")
    return got.stdout.splitlines()[0].split(": ")[0].split(",")[0].strip()


def _copy_library(unpacked: Path, soname: str, lib: Path) -> bool:
    """Copy the file behind ``soname`` (following links) from an unpacked tree into ``lib``."""
    for path in unpacked.rglob(soname):
        if path.exists():
            shutil.copyfile(path.resolve(), lib / soname)
            os.chmod(lib / soname, 0o644)
            return True
    return False


def build_tree(debs: list[Path], deb_cache: Path, tree: Path, log: Callable[[str], None]) -> list[str]:
    """Unpack ``debs`` and lay out ``tree`` (see the module docstring); returns every package used."""
    with tempfile.TemporaryDirectory(prefix="s3prl_colld_tts_") as tmp:
        root = Path(tmp) / "root"
        for deb in debs:
            _run(["dpkg", "-x", str(deb), str(root)])
        lib = tree / "lib"
        (tree / "usr/bin").mkdir(parents=True)
        lib.mkdir()
        for name in EXECUTABLES:
            shutil.copy2(root / "usr/bin" / name, tree / "usr/bin" / name)
        for rel in KEEP:
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(root / rel), str(tree / rel))
        for path in (root / MULTIARCH).glob("*.so.*"):  # the packages' own libraries, under their sonames
            if re.fullmatch(r"lib.+\.so\.\d+", path.name):
                shutil.copyfile(path.resolve(), lib / path.name)
        used = [deb.name for deb in debs]
        extra_root = Path(tmp) / "extra"
        for _ in range(10):  # each round adds the packages of the libraries still loaded from the system
            missing = {so for exe in EXECUTABLES for so in ldd_outside(tree / "usr/bin" / exe, lib)}
            missing -= set(GLIBC_SONAMES)
            if not missing:
                break
            owners = sorted({_owner(so) for so in missing})
            log(f"libraries from the system: {', '.join(sorted(missing))}; adding {', '.join(owners)}")
            for deb in download_debs(owners, deb_cache, log):
                _run(["dpkg", "-x", str(deb), str(extra_root)])
                used.append(deb.name)
            for so in sorted(missing):
                if not _copy_library(extra_root, so, lib):
                    raise TtsPackError(f"{so} is not in the packages {owners}")
        else:
            raise TtsPackError(f"the library closure did not settle: still from the system: {sorted(missing)}")
    (tree / "bin").mkdir()
    for name in EXECUTABLES:
        wrapper = tree / "bin" / name
        wrapper.write_text(WRAPPER.format(name=name, multiarch=MULTIARCH), encoding="utf-8")
        wrapper.chmod(0o755)
    return used


def cache_key(debs: list[Path]) -> str:
    """The packages' names and sizes plus this module's and the installer's source."""
    h = hashlib.sha256()
    for deb in sorted(debs):
        h.update(f"{deb.name}:{deb.stat().st_size}\n".encode())
    h.update(Path(__file__).read_bytes())
    h.update((Path(__file__).parent / "install.py").read_bytes())
    return h.hexdigest()[:16]


def pack_tts(cache: Path, dest: Path, log: Callable[[str], None]) -> dict:
    """Write ``dest`` (tts.tar.gz) from the cache or afresh; returns its manifest entry.

    Raises:
        TtsPackError: apt-get / dpkg missing, a package not found, a library owned by no package,
            or the unpacked synthesisers failing to run.
    """
    debs = download_debs(list(PACKAGES), cache / "debs", log)
    key = cache_key(debs)
    cached = cache / "tts" / f"tts-{key}.tar.gz"
    info_path = cached.with_suffix(".json")
    if not cached.exists() or not info_path.exists():
        with tempfile.TemporaryDirectory(prefix="s3prl_colld_tts_tree_") as tmp:
            tree = Path(tmp) / "tts"
            used = build_tree(debs, cache / "debs", tree, log)
            checked = check_tts(tree)  # runs each wrapper; every library but glibc's resolves into the tree
            info = {"packages": used, "glibc_needed": glibc_needed(tree), "espeak_ng": checked["espeak-ng"].split("  Data at:")[0],
                    "flite_voices": checked["flite"], "libraries": sorted(p.name for p in (tree / "lib").iterdir())}
            log(f"compressing the synthesisers ({sum(p.stat().st_size for p in tree.rglob('*') if p.is_file()) / 2**20:.0f} MiB unpacked)")
            cached.parent.mkdir(parents=True, exist_ok=True)
            part = cached.with_name(cached.name + ".part")
            with tarfile.open(part, "w:gz", compresslevel=6) as tar:
                tar.add(tree, arcname="tts")
            os.replace(part, cached)
            info_path.write_text(json.dumps(info, indent=1), encoding="utf-8")
    shutil.copyfile(cached, dest)
    return json.loads(info_path.read_text(encoding="utf-8"))
