#!/usr/bin/env python3
"""s3prl-style entry point: ``python run_pretrain.py -u TASK -n NAME ...`` (see ``s3prl_colld.pretrain.cli``)."""
import sys

from s3prl_colld.pretrain.cli import main

if __name__ == "__main__":
    sys.exit(main())
