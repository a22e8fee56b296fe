"""Pretrain tasks, one module each: every public module here registers its task with ``@register("name")``
(``s3prl_colld.registry`` imports them on the first lookup), so a new task needs no edit of this file.
"""
