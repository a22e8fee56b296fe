"""``import s3prl_colld.hub``: our names in ``s3prl.hub`` now (kept for scripts and docs that import it).

The names and their loaders live in ``s3prl_colld.s3prl_bridge.hub``; this alias
imports ``s3prl.hub`` and registers them, as the module of this name always did.
"""

from s3prl_colld.s3prl_bridge.hub import HUBERT_NAMES, STUDENT_NAMES, hubert_names, register, student_names

__all__ = ["HUBERT_NAMES", "STUDENT_NAMES", "hubert_names", "register", "student_names"]

register()
