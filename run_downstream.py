"""``python run_downstream.py -m train -u UPSTREAM -d TASK -n NAME ...``: s3prl-style shim for ``s3prl_colld.downstream.cli``."""
import sys

from s3prl_colld.downstream.cli import main

if __name__ == "__main__":
    sys.exit(main())
