"""The MLproject entry point: `python -m flowops.train --name ... --epochs ...`.

It rebuilds the ExperimentSpec from the MLproject parameters (same validation, same
sha256 as `flowops validate` on the YAML file).
"""

from __future__ import annotations

import sys

from flowops.errors import FlowopsError
from flowops.params import parse_args


def main(argv: list[str] | None = None) -> int:
    try:
        spec, experiment_file = parse_args(sys.argv[1:] if argv is None else argv)
    except FlowopsError as exc:
        print(f"flowops.train: {exc}", file=sys.stderr)
        return 1
    print(f"flowops.train: parameters parsed for {spec.name!r} (spec sha256 {spec.sha256()[:12]}, file {experiment_file or '-'})")
    # Training itself lands with the tracked-training issue; do not pretend to train.
    print("flowops.train: training is not implemented yet; nothing was trained", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
