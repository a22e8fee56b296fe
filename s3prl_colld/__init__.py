"""s3prl-colld: distil self-supervised speech encoders into small students, and probe them SUPERB-style."""

from s3prl_colld import hook as _hook

__version__ = "0.1.0"

_hook.install()  # s3prl, once imported, gets the torchaudio compat layer and our upstream names
