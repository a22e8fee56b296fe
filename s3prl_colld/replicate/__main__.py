"""``python -m s3prl_colld.replicate --scale demo --out DIR`` (``run.main``)."""

import sys

from s3prl_colld.replicate.run import main

if __name__ == "__main__":
    sys.exit(main())
