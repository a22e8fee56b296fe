"""Install a GPU kit with no network, check its synthesisers, and give the environment to run in.

Standard library only: this runs on the bare GPU machine before anything of
ours is installed (``python3 -m s3prl_colld.gpu_kit install DIR`` from the
repository's root, whose ``s3prl_colld/__init__`` imports nothing else).

Install = (1) check that this Python is the one the kit was packed for and
that glibc is new enough for Debian's synthesisers; (2) unpack ``tts.tar.gz``
into ``DIR/tts`` and run each synthesiser once (real audio, libraries resolved
inside the kit); (3) ``pip install --no-index --find-links DIR/wheels`` with
pip's configuration and ``PIP_*`` variables cleared (``PIP_NO_INDEX=1``), into
the running environment (its packages, e.g. the image's torch, satisfy what
they can) or, with ``--target``, into a folder; (4) write ``DIR/installed.json``
and ``DIR/env.sh``. :func:`environment` then puts ``DIR/tts/bin`` first on
``PATH`` (espeak-ng, flite, t2p) and names the kit's trans-de-en dictionary in
``S3PRL_COLLD_TRANS_DE_EN``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Mapping

# glibc's own libraries: always the system's (they must match its loader)
GLIBC_SONAMES = ("libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libresolv.so.2",
                 "libutil.so.1", "libanl.so.1", "ld-linux-x86-64.so.2", "linux-vdso.so.1")
EXECUTABLES = ("espeak-ng", "flite", "t2p")
DICTIONARY = "usr/share/trans/de-en"
ESPEAK_DATA = "usr/lib/x86_64-linux-gnu/espeak-ng-data"


class KitError(RuntimeError):
    """The kit cannot be installed or used here (the message says what to do)."""


def load_manifest(kit: Path) -> dict:
    path = kit / "manifest.json"
    if not path.is_file():
        raise KitError(f"{kit} is not a GPU kit (no manifest.json): make one with "
                       "`python -m s3prl_colld.gpu_kit pack DIR` on a machine with network")
    return json.loads(path.read_text(encoding="utf-8"))


def glibc_version() -> tuple[int, int] | None:
    """This machine's glibc as (2, N), or None when it is not glibc."""
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return None
    m = re.fullmatch(r"glibc (\d+)\.(\d+).*", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def glibc_needed(tree: Path) -> str:
    """The newest ``GLIBC_2.N`` symbol version that the tree's executables and libraries ask for."""
    best = (2, 0)
    for path in [*(tree / "usr/bin").iterdir(), *(tree / "lib").iterdir()]:
        for m in re.finditer(rb"GLIBC_(\d+)\.(\d+)", path.read_bytes()):
            best = max(best, (int(m.group(1)), int(m.group(2))))
    return f"{best[0]}.{best[1]}"


def ldd_outside(executable: Path, lib: Path) -> list[str]:
    """Sonames that ``ldd`` resolves outside ``lib`` (or not at all), with ``lib`` first on the search path."""
    env = {**os.environ, "LD_LIBRARY_PATH": str(lib)}
    got = subprocess.run(["ldd", str(executable)], capture_output=True, text=True, env=env, check=False)
    if got.returncode != 0:
        raise KitError(f"ldd {executable} failed: {got.stderr.strip() or got.stdout.strip()}")
    out = []
    root = os.path.realpath(lib)
    for line in got.stdout.splitlines():
        m = re.match(r"\s*(\S+) => (.+?)(?: \(0x[0-9a-f]+\))?$", line)
        if m and (m.group(2) == "not found" or not os.path.realpath(m.group(2)).startswith(root + os.sep)):
            out.append(m.group(1))
    return out


def _check_run(cmd: list[str], what: str) -> subprocess.CompletedProcess[bytes]:
    got = subprocess.run(cmd, capture_output=True, check=False, timeout=120)
    if got.returncode != 0:
        raise KitError(f"the kit's {what} does not run ({got.returncode}): "
                       f"{got.stderr.decode(errors='replace').strip()[-1000:]}")
    return got


def check_tts(tree: Path) -> dict:
    """Run the tree's synthesisers once and return what they report.

    Checks that every library but glibc's resolves inside ``tree/lib`` (where
    ``ldd`` exists), that espeak-ng reads its data from the tree, and that
    espeak-ng and flite write non-silent WAV audio and ``t2p`` prints phones.

    Raises:
        KitError: naming the synthesiser and what failed.
    """
    tree = tree.resolve()
    if shutil.which("ldd"):
        for exe in EXECUTABLES:
            outside = [so for so in ldd_outside(tree / "usr/bin" / exe, tree / "lib") if so not in GLIBC_SONAMES]
            if outside:
                raise KitError(f"the kit's {exe} loads {outside} from outside the kit: re-pack the kit")
    bin_ = tree / "bin"
    version = _check_run([str(bin_ / "espeak-ng"), "--version"], "espeak-ng").stdout.decode().strip()
    data = version.rpartition("Data at: ")[2].strip()
    if not data or os.path.realpath(data) != str(tree / ESPEAK_DATA):
        raise KitError(f"the kit's espeak-ng reads its data from {data!r}, not {tree / ESPEAK_DATA}")
    voices = _check_run([str(bin_ / "flite"), "-lv"], "flite").stdout.decode().split(":", 1)[-1].split()
    phones = _check_run([str(bin_ / "t2p"), "hello"], "t2p").stdout.decode().strip()
    if not phones:
        raise KitError("the kit's t2p printed no phones for 'hello'")
    with tempfile.TemporaryDirectory(prefix="s3prl_colld_kit_check_") as tmp:
        sizes = {}
        for name, cmd in (("espeak-ng", [str(bin_ / "espeak-ng"), "-v", "en-us", "-w", f"{tmp}/e.wav", "hello world"]),
                          ("flite", [str(bin_ / "flite"), "-voice", "slt", "-t", "hello world", "-o", f"{tmp}/f.wav"])):
            _check_run(cmd, name)
            wav = Path(tmp) / ("e.wav" if name == "espeak-ng" else "f.wav")
            sizes[name] = wav.stat().st_size if wav.exists() else 0
            if sizes[name] < 8000 or not any(wav.read_bytes()[44:]):  # > 0.2 s of 16-bit audio, not all zero
                raise KitError(f"the kit's {name} wrote no audio ({sizes[name]} bytes)")
    return {"espeak-ng": version, "flite": voices, "t2p_hello": phones, "wav_bytes": sizes}


def pip_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's) without pip's settings, with the index off."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("PIP_")}
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "PIP_NO_INPUT": "1"})
    return env


def _pip(python: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [python, "-m", "pip", "install", "--no-index", "--no-cache-dir", *args]
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, env=pip_environment(), capture_output=True, text=True, check=False)


def pip_install(kit: Path, target: Path | None = None, python: str = sys.executable) -> str:
    """Install the kit's wheels with no index; returns the mode used (``resolved`` or ``no-deps``).

    Into the running environment, pip resolves our wheel's requirements against
    what is installed plus ``kit/wheels`` (``resolved``); should that fail (an
    image whose versions conflict), every kit wheel is installed with
    ``--no-deps`` instead (``no-deps``, with a warning). ``--target`` always
    installs every kit wheel with ``--no-deps`` (pip cannot see the image's
    packages from there).

    Raises:
        KitError: pip failed (its output is in the message).
    """
    wheels = sorted((kit / "wheels").glob("*.whl"))
    own = [w for w in wheels if w.name.startswith("s3prl_colld-")]
    if len(own) != 1:
        raise KitError(f"{kit / 'wheels'} holds {len(own)} wheels of s3prl-colld, not one: re-pack the kit")
    find = ["--find-links", str(kit / "wheels")]
    if target is None:
        got = _pip(python, [*find, str(own[0])])
        if got.returncode == 0:  # then our wheel itself, over an earlier install of the same version
            got = _pip(python, [*find, "--no-deps", "--force-reinstall", str(own[0])])
            if got.returncode == 0:
                print(got.stdout.strip().splitlines()[-1] if got.stdout.strip() else "", flush=True)
                return "resolved"
        print(f"warning: pip could not resolve the kit against this environment; installing every kit wheel "
              f"with --no-deps instead:\n{got.stdout[-2000:]}\n{got.stderr[-2000:]}", file=sys.stderr, flush=True)
    got = _pip(python, [*find, "--no-deps", *(["--target", str(target), "--upgrade"] if target else []),
                        *map(str, wheels)])
    if got.returncode != 0:
        raise KitError(f"pip install from {kit / 'wheels'} failed:\n{got.stdout[-3000:]}\n{got.stderr[-3000:]}")
    return "no-deps"


def extract_tts(kit: Path) -> Path:
    """Unpack ``kit/tts.tar.gz`` into ``kit/tts`` (replacing an earlier copy); returns that folder."""
    tree = kit / "tts"
    if tree.exists():
        shutil.rmtree(tree)
    with tarfile.open(kit / "tts.tar.gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(kit, filter="data")
        else:  # Python < 3.11.4; the archive is ours
            tar.extractall(kit)
    return tree


def install(kit: Path, target: Path | None = None) -> dict:
    """Install the kit in ``kit`` (see the module docstring); returns what ``installed.json`` records.

    Raises:
        KitError: another Python than the kit's, too old a glibc, a synthesiser that fails, or pip failing.
    """
    kit = kit.resolve()
    manifest = load_manifest(kit)
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if manifest["python"] != here:
        raise KitError(f"the kit in {kit} was packed for Python {manifest['python']}, this is Python {here}: "
                       f"pack it again with --python-version {here}")
    need = tuple(int(x) for x in manifest["tts"]["glibc_needed"].split("."))
    have = glibc_version()
    if have is not None and have < need:
        raise KitError(f"the kit's synthesisers need glibc {manifest['tts']['glibc_needed']}, this machine has "
                       f"{have[0]}.{have[1]}: pack on an older Debian")
    tree = extract_tts(kit)
    tts = check_tts(tree)
    print(f"synthesisers run from {tree}: {tts['espeak-ng']}; flite voices {' '.join(tts['flite'])}", flush=True)
    mode = pip_install(kit, target)
    record = {"python": here, "executable": sys.executable, "mode": mode,
              "target": str(target.resolve()) if target else None, "tts": tts}
    (kit / "installed.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    env = environment(kit, {})
    lines = ["# source this file: the GPU kit's synthesisers and dictionary (s3prl_colld.gpu_kit)",
             f'export PATH="{env["PATH"]}:$PATH"',
             f'export S3PRL_COLLD_TRANS_DE_EN="{env["S3PRL_COLLD_TRANS_DE_EN"]}"']
    if "PYTHONPATH" in env:
        lines.append(f'export PYTHONPATH="{env["PYTHONPATH"]}${{PYTHONPATH:+:$PYTHONPATH}}"')
    (kit / "env.sh").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return record


def environment(kit: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the installed kit's synthesisers and dictionary.

    Raises:
        KitError: the kit is not installed (no ``installed.json``).
    """
    kit = kit.resolve()
    path = kit / "installed.json"
    if not path.is_file():
        raise KitError(f"the kit in {kit} is not installed: run `python -m s3prl_colld.gpu_kit install {kit}` first")
    record = json.loads(path.read_text(encoding="utf-8"))
    env = dict(os.environ if base is None else base)
    old = env.get("PATH")
    env["PATH"] = str(kit / "tts" / "bin") + (os.pathsep + old if old else "")
    env["S3PRL_COLLD_TRANS_DE_EN"] = str(kit / "tts" / DICTIONARY)
    if record.get("target"):
        old = env.get("PYTHONPATH")
        env["PYTHONPATH"] = record["target"] + (os.pathsep + old if old else "")
    return env
