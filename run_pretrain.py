"""``python run_pretrain.py -u TASK -n NAME ...``: s3prl-style shim for ``s3prl_colld.pretrain.cli``."""
import sys

from s3prl_colld.pretrain.cli import main

if __name__ == "__main__":
    sys.exit(main())
