"""The s3prl integration layer: everything of ours that s3prl loads, and every s3prl upstream we wrap.

- ``hub``: our checkpoints' ``s3prl.hub`` names (a static table: registering them imports nothing of ours);
- ``expert``: the student *expert* (s3prl's ``UpstreamExpert`` interface around ``models.student``);
- ``frozen``: ``FrozenS3PRLUpstream``, any ``s3prl.hub`` name frozen (the probes' upstream and the teacher's base);
- ``teacher``: the distillation ``Teacher`` (a ``FrozenS3PRLUpstream`` with targets, precision, unit head).

Layer: above ``models``, below the tasks (docs/architecture.md). This file imports nothing, so that the start-up
hook's ``import s3prl_colld.s3prl_bridge.hub`` stays light.
"""
