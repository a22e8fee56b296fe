"""Install s3prl-colld: distillation of self-supervised speech encoders, as an s3prl extension."""
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

HERE = Path(__file__).parent
PTH = "s3prl_colld_hub.pth"  # start-up hook: our upstream names in s3prl.hub (s3prl_colld/hook.py)


class BuildWithPth(build_py):
    """Also put the .pth file at the top of the build, so that wheels (and editable installs) ship it."""

    def run(self) -> None:
        super().run()
        self.copy_file(str(HERE / PTH), str(Path(self.build_lib) / PTH), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH)]


class _StrategyWithPth:
    """An editable-wheel strategy that also writes the .pth file (setuptools' own write only theirs)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def __call__(self, wheel: object, files: list[str], mapping: dict[str, str]) -> None:
        self.inner(wheel, files, mapping)
        wheel.writestr(PTH, (HERE / PTH).read_bytes())

    def __enter__(self) -> "_StrategyWithPth":
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> object:
        return self.inner.__exit__(*exc)


class EditableWithPth(editable_wheel):
    """``pip install -e .`` ships the .pth file too."""

    def _select_strategy(self, *args: object, **kwargs: object) -> _StrategyWithPth:
        return _StrategyWithPth(super()._select_strategy(*args, **kwargs))

setup(
    name="s3prl-colld",
    version="0.1.0",
    description="CoLLD and friends: distil self-supervised speech encoders into small students, probe them SUPERB-style",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["s3prl_colld", "s3prl_colld.*"]),
    package_data={"s3prl_colld": ["configs/**/*.yaml"]},
    include_package_data=True,
    cmdclass={"build_py": BuildWithPth, "editable_wheel": EditableWithPth},
    install_requires=[
        # Tested: torch/torchaudio 2.8 (CI, constraints.txt) to 2.11 (s3prl_colld.compat patches what
        # torchaudio >= 2.9 removed); a newer torch already installed is kept, never downgraded.
        "torch>=2.8,<2.12",
        "torchaudio>=2.8,<2.12",
        "s3prl==0.4.18",
        "transformers<6",
        "huggingface_hub<2",
        "soundfile>=0.12",
        "numpy",
        "scipy",
        "scikit-learn",
        "pyyaml",
        "tqdm",
        "tensorboard",
        "editdistance",
        "sentencepiece",
        "sacrebleu>=2",
        "matplotlib",
        "pyroomacoustics>=0.7",  # room impulse responses of the synthetic corpus
    ],
    extras_require={"test": ["pytest>=7", "pytest-timeout"], "mutation": ["mutmut>=3.8,<4"],
                    # python -m s3prl_colld.export: Hugging Face folders (transformers is a dependency) and ONNX
                    "export": ["safetensors>=0.4", "onnx>=1.16", "onnxruntime>=1.18"]},
    entry_points={
        "console_scripts": [
            "colld-pretrain=s3prl_colld.pretrain.cli:main",
            "colld-synth=s3prl_colld.data.synth.generate:main",
            "colld-downstream=s3prl_colld.downstream.cli:main",
            "colld-submit=s3prl_colld.downstream.submit:main",
            "colld-torchrun=s3prl_colld.launch:main",
        ]
    },
)
