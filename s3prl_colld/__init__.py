"""s3prl-colld: distil self-supervised speech encoders into small students, and probe them SUPERB-style."""

__version__ = "0.1.0"
