"""Students outside s3prl (``python -m s3prl_colld.export``): Hugging Face folders and ONNX files.

Every student kind (``export_students.KINDS``) is compared with our upstream as
s3prl loads it (``S3PRLUpstream(name, path_or_url=CKPT)``) on a padded batch:

- the HF folder is loaded by a separate interpreter that imports only torch and
  transformers (``python -S`` with site-packages on ``sys.path``, so not even the
  start-up hook of our ``.pth`` file runs) and checks it imported nothing of ours;
- the ONNX file is run by onnxruntime (CPU), batch and time of other sizes than traced;
- a student ``HubertModel`` cannot represent is refused with the ONNX route named, nothing written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_students import KINDS  # noqa: E402

from s3prl_colld.export.__main__ import main  # noqa: E402
from s3prl_colld.export.onnx_export import GraphEncoder, int8_path, max_valid_difference, run_onnx  # noqa: E402
from s3prl_colld.export.source import load_source  # noqa: E402


BOUND = 1e-4
LENGTHS = [27_000, 16_000, 21_111]  # a padded batch: 1.7 s, 1.0 s, 1.3 s
HF_KINDS = [k for k, (_, hf) in KINDS.items() if hf]

LOADER = """
import json, sys
sys.path.append(sys.argv[1])  # site-packages, without running its .pth files
import torch
from transformers import AutoFeatureExtractor, HubertModel

result = {}
for folder, batches in json.loads(sys.argv[2]).items():
    fe = AutoFeatureExtractor.from_pretrained(folder)
    model, info = HubertModel.from_pretrained(folder, output_loading_info=True)
    model.eval()
    out = {}
    for name, path in batches.items():
        waves = torch.load(path, weights_only=True)
        x = fe([w.numpy() for w in waves], sampling_rate=16000, padding=True, return_tensors="pt")
        with torch.no_grad():
            hs = model(**x, output_hidden_states=True).hidden_states
        torch.save([h.contiguous() for h in hs], path + ".hf.pt")
    result[folder] = {"extractor": type(fe).__name__, "missing": info["missing_keys"],
                      "unexpected": info["unexpected_keys"], "mismatched": [k for k, *_ in info["mismatched_keys"]]}
print("RESULT " + json.dumps({"loaded": result, "ours": sorted(m for m in sys.modules if m.startswith("s3prl"))}))
"""


def _waves(lengths: list[int], seed: int = 0) -> list[torch.Tensor]:
    """Speech-like test signals: a few harmonics with a moving pitch, plus noise, in [-0.5, 0.5]."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        t = torch.arange(n) / 16_000
        f0 = 120 + 40 * torch.sin(2 * torch.pi * 0.7 * t)
        phase = 2 * torch.pi * torch.cumsum(f0, 0) / 16_000
        wav = sum(torch.sin(k * phase) / k for k in range(1, 6)) * 0.1 + torch.randn(n, generator=g) * 0.02
        out.append(wav.float())
    return out


def _pad(waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.nn.utils.rnn.pad_sequence(waves, batch_first=True), torch.tensor([w.numel() for w in waves])


def _reference(ckpt: Path, waves: list[torch.Tensor]) -> list[torch.Tensor]:
    """Our upstream's hidden states, as s3prl loads it (its first hub name)."""
    from s3prl.nn import S3PRLUpstream

    upstream = S3PRLUpstream(load_source(ckpt).upstreams[0], path_or_url=str(ckpt)).eval()
    with torch.no_grad():
        hs, _ = upstream(*_pad(waves))
    return list(hs)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("students")
    return {kind: make(folder / f"{kind}.ckpt") for kind, (make, _) in KINDS.items()}


@pytest.fixture(scope="module")
def hf_run(checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Export every representable kind to HF (the CLI), then load all of them in one isolated interpreter."""
    out = tmp_path_factory.mktemp("hf")
    jobs: dict[str, dict[str, str]] = {}
    for kind in HF_KINDS:
        folder = out / kind
        assert main([str(checkpoints[kind]), "--to", "hf", str(folder)]) == 0
        jobs[str(folder)] = {}
        for name, lengths in (("padded", LENGTHS), ("unpadded", [LENGTHS[0]] * 2)):
            path = out / f"{kind}-{name}.pt"
            torch.save(_waves(lengths), path)
            jobs[str(folder)][name] = str(path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")} | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-S", "-c", LOADER, sysconfig.get_paths()["purelib"], json.dumps(jobs)],
                          cwd=out, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    return {"out": out, **result}


def test_hf_folder_loads_with_transformers_alone(hf_run: dict) -> None:
    assert hf_run["ours"] == []  # neither s3prl_colld (not even its start-up hook) nor s3prl
    assert len(hf_run["loaded"]) == len(HF_KINDS)
    for folder, info in hf_run["loaded"].items():
        assert info == {"extractor": "Wav2Vec2FeatureExtractor", "missing": [], "unexpected": [], "mismatched": []}
        assert {p.name for p in Path(folder).iterdir()} == {"config.json", "model.safetensors",
                                                            "preprocessor_config.json", "README.md"}
    leftovers = [p.name for p in hf_run["out"].iterdir() if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.parametrize("kind", HF_KINDS)
def test_hf_hidden_states_equal_our_upstream(kind: str, hf_run: dict, checkpoints: dict[str, Path]) -> None:
    out = hf_run["out"]
    source = load_source(checkpoints[kind])
    frames = (torch.tensor(LENGTHS) - 400) // 320 + 1  # the CNN's output lengths (as HF counts them)
    theirs = torch.load(out / f"{kind}-padded.pt.hf.pt", weights_only=True)
    assert len(theirs) == source.encoder.cfg.layers + 1
    if source.padding == "conv":
        ref = _reference(checkpoints[kind], _waves(LENGTHS))
    else:  # s3prl's HuBERT counts padded frames otherwise (source.hubert_padding): the same model, HF's rule
        graph = GraphEncoder(dataclasses.replace(source, padding="conv")).eval()
        with torch.no_grad():
            ref = list(graph(*_pad(_waves(LENGTHS)))[:-1])
    assert max_valid_difference(ref, theirs, frames) <= BOUND
    # unpadded: HF equals s3prl's upstream itself, for every kind
    ref = _reference(checkpoints[kind], _waves([LENGTHS[0]] * 2))
    theirs = torch.load(out / f"{kind}-unpadded.pt.hf.pt", weights_only=True)
    assert max_valid_difference(ref, theirs, frames[:1].repeat(2)) <= BOUND
    # the exported model is the trained student, not a fresh one: an unrelated student differs
    if kind == "colld":
        other = _reference(checkpoints["colld_disc"], _waves([LENGTHS[0]] * 2))
        assert max_valid_difference(other, theirs, frames[:1].repeat(2)) > 100 * BOUND


def test_hf_model_card(hf_run: dict) -> None:
    card = (hf_run["out"] / "colld_disc" / "README.md").read_text()
    for text in ("CoLLD", "discriminative loss", "hubert_local", "/runs/teacher/states-400.ckpt",
                 "training steps | 200", "/data/synth_en", "HubertModel.from_pretrained"):
        assert text in card, text
    config = json.loads((hf_run["out"] / "colld" / "preprocessor_config.json").read_text())
    assert config["do_normalize"] is True and config["sampling_rate"] == 16000  # colld normalises the waveform
    assert json.loads((hf_run["out"] / "l2l" / "preprocessor_config.json").read_text())["do_normalize"] is False


@pytest.mark.parametrize("kind", [k for k, (_, hf) in KINDS.items() if not hf])
def test_hf_refuses_what_hubert_model_cannot_represent(kind: str, checkpoints: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(checkpoints[kind]), "--to", "hf", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "--to onnx" in err and ("fbank front-end" in err if kind == "fbank" else "layer_norm_first" in err)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


@pytest.mark.parametrize("kind", list(KINDS))
def test_onnx_hidden_states_equal_our_upstream(kind: str, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / f"{kind}.onnx"
    quantize = kind == "colld"
    assert main([str(checkpoints[kind]), "--to", "onnx", str(path), "--no-check",
                 *(["--quantize", "int8"] if quantize else [])]) == 0
    waves = _waves(LENGTHS, seed=3)  # other batch and time sizes than the traced 2 x 1.5 s
    ref = _reference(checkpoints[kind], waves)
    outs = run_onnx(path, *_pad(waves))
    assert len(outs) == len(ref) + 1
    frames = outs[-1]
    if load_source(checkpoints[kind]).padding == "conv":
        frontend = load_source(checkpoints[kind]).encoder.frontend
        assert frames.tolist() == frontend.output_lengths(torch.tensor(LENGTHS)).tolist()
    assert all((h[i, n:] == 0).all() for h in outs[:-1] for i, n in enumerate(frames.tolist()))
    assert max_valid_difference(ref, outs[:-1], frames) <= BOUND
    if quantize:
        q = int8_path(path)
        assert q.stat().st_size < 0.6 * path.stat().st_size
        qouts = run_onnx(q, *_pad(waves))
        err = max_valid_difference(ref, qouts[:-1], frames)
        assert BOUND < err < 0.5  # quantised: close, not equal
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_errors_say_what_to_do(checkpoints: dict[str, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = str(checkpoints["colld"])
    assert main([ckpt, "--to", "tflite", str(tmp_path / "x")]) == 2
    assert "hf (a transformers folder) or onnx" in capsys.readouterr().err
    assert main([ckpt, "--to", "hf", str(tmp_path / "x"), "--quantize", "int8"]) == 2
    assert "--to onnx only" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.ckpt"), "--to", "onnx", str(tmp_path / "x.onnx")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    toy = tmp_path / "toy.ckpt"
    torch.save({"task": "toy_regression", "config": {}, "model": {"net.weight": torch.zeros(2)}, "step": 1}, toy)
    assert main([str(toy), "--to", "onnx", str(tmp_path / "x.onnx")]) == 2
    assert "holds no student" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert main([ckpt, "--to", "hf", str(busy)]) == 2
    assert "--force" in capsys.readouterr().err and (busy / "keep.txt").read_text() == "mine"
    assert main([ckpt, "--to", "hf", str(busy), "--force"]) == 0
    assert not (busy / "keep.txt").exists() and (busy / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "toy.ckpt"]  # no temp folders left


def test_model_card_has_the_results_grid_row(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    from s3prl_colld.export.card import find_results_row, model_card

    run = tmp_path / "grid" / "students" / "colld-s0"
    run.mkdir(parents=True)
    ckpt = run / "states-200.ckpt"
    ckpt.write_bytes(checkpoints["colld"].read_bytes())
    pr = {"dev": {"mean": 80.5, "std": 0.0, "n": 1}, "test": {"mean": 81.25, "std": 0.0, "n": 1}}
    rows = [{"name": "teacher", "ckpt": "/elsewhere/states-400.ckpt", "pr": {}},
            {"name": "colld", "ckpt": "/old/place/students/colld-s0/states-200.ckpt", "params_m": 1.23, "pr": pr}]
    (tmp_path / "grid" / "results.json").write_text(json.dumps({"rows": rows}))
    source = load_source(ckpt)
    row = find_results_row(source)
    assert row is not None and row["name"] == "colld"
    card = model_card(source, row)
    assert "| colld | 80.5 | 81.2 | 1.23 |" in card
    assert find_results_row(load_source(checkpoints["colld"])) is None  # not in a grid folder


def test_hubert_padding_rule_is_s3prls() -> None:
    from s3prl.upstream.hubert.hubert_model import HubertModel as S3prlHubert

    from s3prl_colld.export.source import hubert_padding

    for n, t in ((27_000, 84), (32_000, 99), (16_400, 50), (48_123, 150)):
        lengths = torch.tensor([n, n - 1, n // 2, n // 3 + 7, 401])
        pad = torch.arange(n)[None, :] >= lengths[:, None]
        theirs = ~S3prlHubert.forward_padding_mask(None, torch.zeros(1, 1, t).transpose(1, 2), pad)
        assert torch.equal(hubert_padding(torch.arange(t), torch.tensor(n), lengths), theirs), (n, t)
