"""Pretrain tasks and the trainer that runs them (``run_pretrain.py``).

- ``task.py``: the task contract (``PretrainTask``, ``@register``, ``get_task``);
- ``schema.py``: the runner / data config sections every task has (the optimizer's is in ``runtime.optim``);
- ``trainer.py``: ``train(task, cfg, expdir, resume)``, the one training loop;
- ``cli.py``: ``run_pretrain.py``'s flags and config resolution;
- ``tasks/``: one module per task (imported lazily by ``get_task``).
"""
