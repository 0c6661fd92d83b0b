"""`python -m flowops.train`: the MLproject's entry point, kept at this path.

`MLproject` and every logged run name this module; the code lives in `flowops.training.run`.
"""

from __future__ import annotations

import sys

from flowops.training.run import main

if __name__ == "__main__":
    sys.exit(main())
