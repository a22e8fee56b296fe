"""Downstream tasks, one module each (``superb.py``: PR, ASR, ST): every public module here registers its
tasks with ``@register("name")``, so a new task is one module plus ``configs/downstream/NAME.yaml``.
"""
