"""``python -m s3prl_colld.data.synth ...``: the corpus generator (``generate.main``)."""

import sys

from s3prl_colld.data.synth.generate import main

if __name__ == "__main__":
    sys.exit(main())
