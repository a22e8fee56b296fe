"""Pretrain tasks and the trainer that runs them (``run_pretrain.py``)."""
