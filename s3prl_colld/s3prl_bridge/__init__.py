"""Our students as s3prl upstreams (``expert.py``: the upstream; ``s3prl_colld.hub``: the names)."""
