"""Our upstream names in ``s3prl.hub`` with no import of ours (the .pth start-up hook), and the torchaudio layer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PTH = "s3prl_colld_hub.pth"
# what `import s3prl.hub` imports of ours: the hook, the torchaudio layer and the hub table (standard library only)
LIGHT = ["s3prl_colld", "s3prl_colld.compat", "s3prl_colld.hook", "s3prl_colld.s3prl_bridge",
         "s3prl_colld.s3prl_bridge.hub"]
NAMES = ["colld_local", "colld_small", "distilhubert_colld_local", "l2l_local"]  # documented in the README

# A fresh interpreter as after `pip install`: site-packages (here SITE) holds our .pth; torchaudio >= 2.9 is
# simulated by removing set_audio_backend and sox_effects; then only s3prl is imported, the way its runner does.
FRESH = """
import importlib.abc, json, site, sys
site.addsitedir(sys.argv[1])
started = {m: m in sys.modules for m in ("torch", "torchaudio", "s3prl_colld.s3prl_bridge.hub")}
import torchaudio

class Removed(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torchaudio.sox_effects":
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, Removed())
del torchaudio.set_audio_backend, torchaudio.sox_effects
del sys.modules["torchaudio.sox_effects"]
try:
    import torchaudio.sox_effects
    removed = False
except ImportError:
    removed = not hasattr(torchaudio, "set_audio_backend")
import s3prl.hub as hub
try:
    torchaudio.sox_effects.apply_effects_tensor(None, 16000, [])
    stub = "returned"
except RuntimeError as err:
    stub = str(err)
ours = sorted(m for m in sys.modules if m.split(".")[0] == "s3prl_colld")
print(json.dumps({"started": started, "removed": removed, "dir": sorted(dir(hub)), "ours": ours,
                  "callable": {n: callable(getattr(hub, n, None)) for n in sys.argv[2:]}, "stub": stub}))
"""


def test_fresh_interpreter_finds_our_names_with_torchaudio_functions_removed(tmp_path: Path) -> None:
    site_dir = tmp_path / "site-packages"
    site_dir.mkdir()
    shutil.copy(REPO / PTH, site_dir / PTH)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", FRESH, str(site_dir), *NAMES], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["started"] == {"torch": False, "torchaudio": False, "s3prl_colld.s3prl_bridge.hub": False}
    # registration is lazy: no task, model or data module of ours (torch models, sklearn, scipy) until a name is called
    assert result["ours"] == LIGHT, result["ours"]
    assert result["removed"]  # the simulation really removed both
    assert set(NAMES) <= set(result["dir"]) and all(result["callable"].values())
    assert "removed in torchaudio 2.9" in result["stub"]


def test_compat_changes_nothing_on_a_complete_torchaudio() -> None:
    import torchaudio

    from s3prl_colld.compat import patch_torchaudio

    before = (torchaudio.set_audio_backend, sys.modules["torchaudio.sox_effects"])
    assert patch_torchaudio() == []
    assert (torchaudio.set_audio_backend, sys.modules["torchaudio.sox_effects"]) == before


def test_wheel_and_editable_wheel_ship_the_pth(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(REPO / "s3prl_colld", src / "s3prl_colld", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "README.md", "MANIFEST.in", "constraints.txt", PTH):
        shutil.copy(REPO / name, src / name)
    wheels = []
    for kind in ("wheel", "editable"):  # one process each: setuptools' build_meta keeps state between calls
        build = f"import os; from setuptools import build_meta as b; print('WHEEL', b.build_{kind}(os.environ['DIST']))"
        out = subprocess.run([sys.executable, "-c", build], cwd=src, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "DIST": str(tmp_path / "dist")})
        assert out.returncode == 0, out.stderr[-3000:]
        wheels.append(out.stdout.split("WHEEL")[-1].strip())
    assert "editable" in wheels[1] and "editable" not in wheels[0]
    for wheel in wheels:
        with zipfile.ZipFile(tmp_path / "dist" / wheel) as z:
            assert z.read(PTH) == (REPO / PTH).read_bytes(), wheel


def test_hub_table_matches_the_task_registry() -> None:
    """The static table that registers our names lazily says what the tasks' ``@register(upstreams=...)`` say."""
    from s3prl_colld.pretrain.task import TASKS
    from s3prl_colld.s3prl_bridge.hub import HUBERT_NAMES, STUDENT_NAMES

    students = {n: t.upstreams for n, t in TASKS.all().items() if "student" in t.exports and t.upstreams}
    huberts = {n: t.upstreams for n, t in TASKS.all().items() if getattr(t, "hubert_checkpoint", False)}
    assert STUDENT_NAMES == students, "edit STUDENT_NAMES in s3prl_colld/s3prl_bridge/hub.py to match the tasks"
    assert HUBERT_NAMES == huberts, "edit HUBERT_NAMES in s3prl_colld/s3prl_bridge/hub.py to match the tasks"
    assert set(NAMES) <= {n for names in STUDENT_NAMES.values() for n in names}
