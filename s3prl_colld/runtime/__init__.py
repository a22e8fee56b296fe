"""Generic pieces shared by the pretrain trainer and the downstream runner.

- ``optim``: ``OptimizerConfig``, the optimizer, the LR schedule and the step policy;
- ``rng``: seeding and the global RNG states as checkpointable values;
- ``distributed``: torchrun's environment, the device, collectives;
- ``precision``: fp32 / bf16 / fp16 autocast;
- ``cli``: command-line errors, run folders, logging, ``config.yaml``.
"""
