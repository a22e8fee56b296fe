"""The kit's wheels: our package and every dependency the GPU image lacks, for the image's Python.

Packing side only (it uses ``packaging`` and the network through pip, the
ordinary client). The walk starts at our own wheel's ``Requires-Dist`` and
follows each requirement that the image does not satisfy (see :mod:`.image`),
with markers evaluated for the target (CPython ``X.Y`` on Linux x86-64):

- a binary or pure wheel is downloaded with ``pip download --no-deps
  --only-binary=:all: --python-version X.Y --platform manylinux...``, at the
  version installed here when that satisfies the requirement (the tested stack);
- a project that publishes only an sdist (s3prl 0.4.18) is built here with
  ``pip wheel --no-deps``; the result must be pure Python (``py3-none-any``),
  else packing stops with an error naming the project.

Downloaded and built wheels are kept in a cache folder and reused by later packs
(no network then), matched by name, version and the target's wheel tags.
"""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path
from typing import Callable

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from s3prl_colld.gpu_kit.image import IMAGE_PACKAGES, IMAGE_VERSIONS

# glibc-based wheels the image (glibc >= 2.35) and this machine load; pip matches manylinux_2_N exactly
MANYLINUX = ["manylinux_2_35_x86_64", "manylinux_2_34_x86_64", "manylinux_2_31_x86_64", "manylinux_2_28_x86_64",
             "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux2010_x86_64", "manylinux1_x86_64"]


class PackError(RuntimeError):
    """Packing cannot go on (the message says what to do)."""


@dataclass(frozen=True)
class Target:
    """The Python the kit is for: CPython ``version`` ("3.12") on Linux x86-64."""

    version: str

    @property
    def nodot(self) -> str:
        return self.version.replace(".", "")

    def tags(self) -> set[Tag]:
        """Every wheel tag this Python installs (for matching cached wheels)."""
        v = tuple(int(x) for x in self.version.split("."))
        platforms = MANYLINUX + ["linux_x86_64"]
        return {*cpython_tags(v, platforms=platforms), *compatible_tags(v, "cp" + self.nodot, platforms)}

    def markers(self) -> dict[str, str]:
        """The marker environment of the target (``python_version`` etc.; Linux x86-64 CPython)."""
        env = default_environment()
        env.update({"python_version": self.version, "python_full_version": self.version + ".0",
                    "implementation_name": "cpython", "platform_python_implementation": "CPython",
                    "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                    "os_name": "posix", "extra": ""})
        return env

    def pip_download_args(self) -> list[str]:
        args = ["--only-binary=:all:", "--python-version", self.version, "--implementation", "cp",
                "--abi", "cp" + self.nodot, "--abi", "abi3", "--abi", "none"]
        for p in MANYLINUX + ["any"]:
            args += ["--platform", p]
        return args


def wheel_requirements(wheel: Path) -> list[Requirement]:
    """``Requires-Dist`` of a wheel's METADATA (extras included; the caller evaluates markers)."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        meta = Parser().parsestr(z.read(name).decode("utf-8"))
    return [Requirement(r) for r in meta.get_all("Requires-Dist") or []]


def installed_version(name: str) -> Version | None:
    """The version installed in this (packing) environment, if any."""
    try:
        return Version(md.version(name))
    except md.PackageNotFoundError:
        return None


def _run_pip(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, check=False)


class WheelCache:
    """A folder of wheels for several targets, looked up by project, version and tags."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def find(self, req: Requirement, target: Target) -> Path | None:
        """The highest cached version of ``req`` installable on ``target`` (None if none)."""
        name, tags = canonicalize_name(req.name), target.tags()
        best: tuple[Version, Path] | None = None
        for path in self.folder.glob("*.whl"):
            try:
                wname, version, _build, wtags = parse_wheel_filename(path.name)
            except ValueError:
                continue
            if wname == name and req.specifier.contains(version, prereleases=True) and wtags & tags:
                if best is None or version > best[0]:
                    best = (version, path)
        return best[1] if best else None

    def fetch(self, req: Requirement, target: Target, log: Callable[[str], None]) -> Path:
        """A wheel of ``req`` for ``target``: cached, downloaded, or built here (pure Python only)."""
        local = installed_version(req.name)
        if local is not None and req.specifier.contains(local, prereleases=True):
            req = Requirement(f"{req.name}=={local}")  # the version everything here was tested with
        found = self.find(req, target)
        if found:
            return found
        spec = f"{req.name}{req.specifier}"
        log(f"downloading {spec} for Python {target.version}")
        got = _run_pip(["download", "--no-deps", *target.pip_download_args(), "-d", str(self.folder), spec])
        found = self.find(req, target) if got.returncode == 0 else None
        if found:
            return found
        log(f"no wheel of {spec} for Python {target.version}; building one here (pip wheel)")
        built = _run_pip(["wheel", "--no-deps", "--no-build-isolation", "--no-binary", req.name,
                          "-w", str(self.folder), spec])
        found = self.find(req, target)
        if built.returncode != 0 or found is None:
            raise PackError(f"no wheel of {spec} for CPython {target.version} manylinux x86-64, and building one "
                            f"failed:\n{got.stderr[-1500:]}\n{built.stderr[-1500:]}")
        if not found.name.endswith("-none-any.whl"):
            raise PackError(f"{found.name} was built here for this machine's Python, not the GPU's: "
                            f"{req.name} has no wheel for CPython {target.version}; pin a version that has one")
        return found


def build_own_wheel(repo: Path, out: Path) -> Path:
    """Our package as a wheel (``pip wheel --no-deps --no-build-isolation REPO``) in ``out``."""
    with tempfile.TemporaryDirectory(prefix="s3prl_colld_wheel_") as tmp:
        got = _run_pip(["wheel", "--no-deps", "--no-build-isolation", "-w", tmp, str(repo)])
        wheels = list(Path(tmp).glob("s3prl_colld-*.whl"))
        if got.returncode != 0 or len(wheels) != 1:
            raise PackError(f"building our wheel from {repo} failed:\n{got.stdout[-1500:]}\n{got.stderr[-1500:]}")
        dest = out / wheels[0].name
        dest.write_bytes(wheels[0].read_bytes())
    return dest


def check_image_version(req: Requirement) -> str | None:
    """A warning when the image's known version of ``req`` does not satisfy it (None when fine or unknown)."""
    seen = IMAGE_VERSIONS.get(canonicalize_name(req.name))
    if seen and not req.specifier.contains(seen, prereleases=True):
        return f"the image has {req.name} {seen}, which does not satisfy {req}"
    return None


def collect(own_wheel: Path, target: Target, cache: WheelCache, log: Callable[[str], None]) -> tuple[list[Path], list[str]]:
    """The wheels the image lacks for ``own_wheel``'s requirements (transitively), and warnings.

    Raises:
        PackError: a requirement with no wheel for the target (see :meth:`WheelCache.fetch`).
    """
    env = target.markers()
    image = {canonicalize_name(n) for n in IMAGE_PACKAGES}
    todo = [r for r in wheel_requirements(own_wheel) if r.marker is None or r.marker.evaluate(env)]
    done: dict[str, Path] = {}
    warnings: list[str] = []
    while todo:
        req = todo.pop(0)
        name = canonicalize_name(req.name)
        if name in image:
            warning = check_image_version(req)
            if warning:
                warnings.append(warning)
            continue
        if name in done:
            _, version, _, _ = parse_wheel_filename(done[name].name)
            if not req.specifier.contains(version, prereleases=True):
                raise PackError(f"{done[name].name} does not satisfy {req} (two requirements on {req.name} "
                                "disagree); pin one version that satisfies both")
            continue
        done[name] = cache.fetch(req, target, log)
        todo += [r for r in wheel_requirements(done[name]) if r.marker is None or r.marker.evaluate(env)]
    return sorted(done.values()), warnings
