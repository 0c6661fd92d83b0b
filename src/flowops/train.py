"""`python -m flowops.train`: the segmentation MLproject's entry point, kept at this path.

`MLproject` files (ours and every project made from it before #34) and logged runs name this
module; the code lives in `flowops.segmentation.training.run`.
"""

from __future__ import annotations

import sys

from flowops.segmentation.training.run import main

if __name__ == "__main__":
    sys.exit(main())
