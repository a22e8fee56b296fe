"""Install s3prl-colld: distillation of self-supervised speech encoders, as an s3prl extension."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

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
    install_requires=[
        # The stack on which `import s3prl.hub` works unmodified (measured: torchaudio >= 2.9 breaks it).
        "torch==2.8.*",
        "torchaudio==2.8.*",
        "s3prl==0.4.18",
        "transformers<5",
        "huggingface_hub<1",
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
    ],
    extras_require={"test": ["pytest>=7", "pytest-timeout"], "mutation": ["mutmut>=3.8,<4"]},
    entry_points={
        "console_scripts": [
            "colld-pretrain=s3prl_colld.pretrain.cli:main",
            "colld-synth=s3prl_colld.data.synth:main",
            "colld-downstream=s3prl_colld.downstream.cli:main",
            "colld-submit=s3prl_colld.downstream.submit:main",
        ]
    },
)
