"""The GPU kit: pack it here, install it offline into a fresh virtual environment, run its synthesisers.

The GPU image is simulated by a fresh ``python -m venv --without-pip`` whose
site-packages holds one ``.pth`` line naming a folder of symbolic links to the
packages of this test's environment that the GPU image holds
(:data:`s3prl_colld.gpu_kit.image.IMAGE_PACKAGES`: torch, torchaudio, numpy,
transformers, pip, setuptools, ...), together with their own dependencies (as in
any consistent environment; torch 2.8's nvidia-*-cu12 here). What our package
needs beyond the image (s3prl, omegaconf, soundfile, cffi, ...) is therefore
absent until the kit installs it, so a wheel the packer forgot fails the install
(pip resolves our requirements with ``--no-index``, ``PIP_NO_INDEX=1``, pip's
configuration ignored and an HTTP proxy that refuses every connection). The kit
is packed for this interpreter's Python (3.11 here; the GPU's is 3.12, whose
size is reported by ``pack``). Downloads are cached in
``~/.cache/s3prl_colld/gpu_kit`` across runs (the first run needs network, apt-get
and dpkg; later ones about a minute).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from s3prl_colld.gpu_kit import install as kit_install
from s3prl_colld.gpu_kit.image import IMAGE_PACKAGES
from s3prl_colld.gpu_kit.pack import MAX_BYTES, pack

REPO = Path(__file__).resolve().parents[1]
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "s3prl_colld" / "gpu_kit"
KIT_PACKAGES = {"s3prl-colld", "s3prl", "omegaconf", "soundfile", "cffi", "pycparser", "pyroomacoustics", "editdistance"}


def image_distributions() -> dict[str, md.Distribution]:
    """This environment's distributions that the GPU image holds, with their (non-extra) dependencies."""
    site = sysconfig.get_paths()["purelib"]
    dists: dict[str, md.Distribution] = {}
    for d in md.distributions(path=[site]):
        dists.setdefault(canonicalize_name(d.metadata["Name"]), d)
    image = {canonicalize_name(n) for n in IMAGE_PACKAGES}
    todo, keep = [n for n in dists if n in image], {}
    while todo:
        name = todo.pop()
        if name in keep or name not in dists:
            continue
        keep[name] = dists[name]
        for r in dists[name].requires or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return keep


def simulated_image(venv: Path, links: Path) -> dict[str, md.Distribution]:
    """A fresh venv (no pip of its own) that sees only the image's packages, through ``links``."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    dists = image_distributions()
    site = Path(sysconfig.get_paths()["purelib"])
    links.mkdir()
    for dist in dists.values():
        for f in dist.files or []:
            top = f.parts[0]
            if top in ("..", "__pycache__") or top.endswith(".pth") or (links / top).exists():
                continue
            (links / top).symlink_to(site / top)
    venv_site = next((venv / "lib").glob("python*/site-packages"))
    (venv_site / "_gpu_image.pth").write_text(f"{links}\n", encoding="utf-8")
    return dists


def offline_env(**extra: str) -> dict[str, str]:
    """This process's environment without PYTHONPATH or pip settings, and with HTTP(S) refused."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PIP_")}
    env.update({"PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull, "http_proxy": "http://127.0.0.1:9",
                "https_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
                "HTTPS_PROXY": "http://127.0.0.1:9", "OMP_NUM_THREADS": "1"}, **extra)
    return env


def audio_digests(corpus: Path) -> dict[str, str]:
    return {str(p.relative_to(corpus)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(corpus.rglob("*.flac"))}


def run(cmd: list, cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    got = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                         check=False)
    assert got.returncode == 0, f"{cmd} failed ({got.returncode}):\n{got.stdout[-3000:]}\n{got.stderr[-3000:]}"
    return got


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_pack_then_offline_install_into_a_fresh_venv_runs_the_synthesisers(tmp_path: Path) -> None:
    kit = tmp_path / "kit"
    manifest = pack(kit, PY, CACHE, log=lambda msg: print(msg, flush=True))
    on_disk = sum(p.stat().st_size for p in kit.rglob("*") if p.is_file())
    assert on_disk <= MAX_BYTES and manifest["total_bytes"] == on_disk
    wheels = {canonicalize_name(w["file"].split("-")[0]) for w in manifest["wheels"]}
    assert wheels == KIT_PACKAGES  # our package and exactly what the image lacks: no torch, numpy, ...

    venv, links = tmp_path / "venv", tmp_path / "image"
    image = simulated_image(venv, links)
    assert not KIT_PACKAGES & set(image), "the simulated image must lack what the kit brings"
    python = venv / "bin" / "python"
    # installed from the repository's root (as on the GPU machine), where nothing of ours is installed yet
    run([python, "-m", "s3prl_colld.gpu_kit", "install", kit], cwd=REPO, env=offline_env(), timeout=240)
    record = json.loads((kit / "installed.json").read_text())
    assert record["mode"] == "resolved" and record["python"] == PY  # pip resolved every requirement offline

    probe = ("import json, s3prl_colld, s3prl, s3prl.hub, soundfile, omegaconf, pyroomacoustics, editdistance, torch;"
             "print(json.dumps({'ours': s3prl_colld.__file__, 's3prl': s3prl.__file__, 'torch': torch.__file__,"
             " 'soundfile': soundfile.__file__, 'hub': hasattr(s3prl.hub, 'colld_local')}))")
    where = json.loads(run([python, "-c", probe], cwd=tmp_path, env=offline_env()).stdout.splitlines()[-1])
    venv_site = str(next((venv / "lib").glob("python*/site-packages")))
    assert where["ours"].startswith(venv_site) and where["s3prl"].startswith(venv_site)
    assert where["soundfile"].startswith(venv_site) and where["torch"].startswith(str(links))
    assert where["hub"], "the installed .pth hook did not register our upstreams in s3prl.hub"

    # the synthesisers: PATH holds only the kit's wrappers, the dictionary comes from the kit
    env = kit_install.environment(kit, offline_env(PATH="/nonexistent"))
    assert env["PATH"] == f"{kit.resolve() / 'tts' / 'bin'}{os.pathsep}/nonexistent"
    version = run(["espeak-ng", "--version"], cwd=tmp_path, env=env).stdout
    assert f"Data at: {kit.resolve() / 'tts' / 'bin'}/../usr/lib/x86_64-linux-gnu/espeak-ng-data" in version
    synth = ["-m", "s3prl_colld.data.synth", "--lang", "en", "--utterances", "10", "--speakers", "8",
             "--unseen-speakers", "2", "--workers", "1", "--seed", "3"]
    run([python, *synth, "--out", tmp_path / "kit_corpus"], cwd=tmp_path, env=env, timeout=240)
    # the same corpus from this machine's installed espeak-ng, flite and dictionary: the same bytes
    system = {**offline_env(PYTHONPATH=str(REPO)), "PATH": "/usr/bin:/bin"}
    run([sys.executable, *synth, "--out", tmp_path / "system_corpus"], cwd=tmp_path, env=system, timeout=240)
    kit_audio, system_audio = audio_digests(tmp_path / "kit_corpus"), audio_digests(tmp_path / "system_corpus")
    assert len(kit_audio) >= 10 and kit_audio == system_audio
    manifest_lines = (tmp_path / "kit_corpus" / "manifest.json").read_text()
    assert "flite" in manifest_lines and "espeak" in manifest_lines  # both engines spoke

    # run: replicate's own command line, in the kit's environment
    got = run([python, "-m", "s3prl_colld.gpu_kit", "run", kit, "--", "--help"], cwd=tmp_path, env=offline_env())
    assert "--scale" in got.stdout


def test_install_refuses_a_kit_for_another_python(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"python": "2.7", "tts": {"glibc_needed": "2.0"}}))
    with pytest.raises(kit_install.KitError, match="packed for Python 2.7.*--python-version"):
        kit_install.install(tmp_path)


def test_run_needs_an_installed_kit(tmp_path: Path) -> None:
    from s3prl_colld.gpu_kit.__main__ import main

    (tmp_path / "manifest.json").write_text("{}")
    assert main(["run", str(tmp_path), "--", "--help"]) == 2


def test_pack_refuses_a_folder_with_other_files(tmp_path: Path) -> None:
    from s3prl_colld.gpu_kit.pack import prepare
    from s3prl_colld.gpu_kit.wheels import PackError

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PackError, match="not a kit's"):
        prepare(tmp_path)
    assert (tmp_path / "notes.txt").exists()
