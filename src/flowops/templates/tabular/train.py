"""Train a classifier on a dataset that ships inside scikit-learn (nothing is downloaded).

The breast-cancer set: 569 rows, 30 features, two classes. A scaled logistic regression; its
validation metrics and the model, logged to the MLflow run `flowops train` (or `mlflow run`)
started. Two things flowops reads besides metrics:

- the tag `flowops.eval_set`: a hash of the validation rows. flowops compares two models only
  when they were evaluated on the same data, and the tag is how a run says which data that was;
- `evaluation/per_example.npz`: each validation row's id and, for each metric, what the row
  adds to it and how the rows make the metric (docs/comparison.md): accuracy and log loss are
  means of per-row values, F1 is a ratio of per-row counts. flowops gives the interval of the
  difference between two models on the same rows from it (a policy can ask for `confidence:`),
  and refuses a run whose logged numbers are not what its rows make;
- images under the artifact folder `report/`: shown in the PR comment (here a confusion matrix).
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

import mlflow
import numpy as np
from mlflow.models import infer_signature
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--max_iter", type=int, default=500)
    parser.add_argument("--test_size", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    x_train, x_val, y_train, y_val = split(args.test_size, args.seed)
    with mlflow.start_run():  # the run flowops (or mlflow run) created: MLFLOW_RUN_ID
        mlflow.log_params({"rows_train": len(x_train), "rows_val": len(x_val)})
        rows = x_val.to_csv(index=True).encode() + y_val.to_csv(index=True).encode()
        mlflow.set_tag("flowops.eval_set", hashlib.sha256(rows).hexdigest())
        model = make_pipeline(StandardScaler(), LogisticRegression(C=args.C, max_iter=args.max_iter))
        model.fit(x_train, y_train)
        predicted = model.predict(x_val)
        truth = y_val.to_numpy()
        arrays = per_example(model, x_val, y_val)
        mlflow.log_metrics(
            {
                "val_accuracy": accuracy_score(truth, predicted),
                "val_f1": f1_score(truth, predicted),
                "val_log_loss": float(arrays["val_log_loss"].mean()),  # the mean of the rows' losses
            }
        )
        mlflow.sklearn.log_model(model, name="model", signature=infer_signature(x_val, predicted))
        log_per_example(arrays)
        log_confusion_matrix(y_val, predicted)


def split(test_size: float, seed: int):
    """(x_train, x_val, y_train, y_val): the same rows for the same test_size and seed."""
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)


def per_example(model, x_val, y_val) -> dict:
    """What each validation row adds to each metric (evaluation/per_example.npz): evaluate.py
    writes the same for a model holding an alias, so flowops compares both on these rows."""
    proba = model.predict_proba(x_val)
    predicted = np.argmax(proba, axis=1)
    truth = y_val.to_numpy()
    tp, fp, fn = ((predicted == p) & (truth == t) for p, t in ((1, 1), (1, 0), (0, 1)))
    return {
        "ids": x_val.index.to_numpy(),
        "val_accuracy": (predicted == truth).astype(float),  # a mean: 1 for a right row
        "val_log_loss": -np.log(np.clip(proba[np.arange(len(truth)), truth], 1e-15, 1.0)),
        **ratio("val_f1", 2.0 * tp, 2.0 * tp + fp + fn),  # F1 = 2TP / (2TP + FP + FN), summed over rows
    }


def ratio(metric: str, numerator, denominator) -> dict:
    """The arrays of a metric that is sum(numerator) / sum(denominator) over the rows."""
    return {f"{metric}.aggregate": "ratio", f"{metric}.numerator": numerator, f"{metric}.denominator": denominator}


def log_per_example(arrays: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "per_example.npz"
        np.savez(path, **arrays)
        mlflow.log_artifact(str(path), artifact_path="evaluation")


def log_confusion_matrix(truth, predicted) -> None:
    import matplotlib

    matplotlib.use("Agg")
    display = ConfusionMatrixDisplay.from_predictions(truth, predicted, display_labels=["malignant", "benign"])
    display.ax_.set_title("validation rows")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "confusion_matrix.png"
        display.figure_.savefig(path, dpi=100, bbox_inches="tight")
        mlflow.log_artifact(str(path), artifact_path="report")


if __name__ == "__main__":
    main()
