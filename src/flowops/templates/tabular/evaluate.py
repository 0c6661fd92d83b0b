"""Score a model on this project's validation rows: `flowops train --holders DIR` runs this entry
point for each model holding an alias, so the candidate and the holders are compared on the very
rows the candidate was evaluated on (flowops.yaml: `evaluate: evaluate`).

It writes the model's per-example evidence to --output and logs nothing.
"""

from __future__ import annotations

import argparse

import mlflow
import numpy as np
from train import per_example, split  # type: ignore[import-not-found]  # beside this file


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_uri", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--test_size", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    _, x_val, _, y_val = split(args.test_size, args.seed)
    model = mlflow.sklearn.load_model(args.model_uri)
    np.savez(args.output, **per_example(model, x_val, y_val))


if __name__ == "__main__":
    main()
