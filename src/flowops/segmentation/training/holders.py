"""Score the models holding the aliases on the candidate's own validation images.

`flowops train --holders DIR` (DIR from `flowops holders export`, via FLOWOPS_HOLDERS_DIR):
each holder's pyfunc predicts the very images the candidate was evaluated on, so the two are
compared on the same data with a paired interval. Logged on the candidate run as metrics
`holder.<alias>.<metric>`, tags `flowops.holder.<alias>.version`, and per-image matrices in
`evaluation/holder.<alias>.npz`. A holder trained for other categories is not scored (its
numbers would not mean the same classes): the tag says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flowops.training.scoring import HOLDERS_ENV


def score_holders(spec, val, eval_set: str, tmp: Path) -> list[str]:
    """Score every exported holder; the aliases scored."""
    folder = os.environ.get(HOLDERS_ENV)
    if not folder:
        return []
    import mlflow
    import numpy as np

    from flowops.segmentation import evaluation
    from flowops.segmentation.pyfunc import META_FILE

    index = json.loads((Path(folder) / "holders.json").read_text())
    scored = []
    for alias, entry in sorted(index.items()):
        model_dir = Path(folder) / alias
        metas = list(model_dir.rglob(META_FILE))
        meta = json.loads(metas[0].read_text()) if metas else {}
        tag = f"flowops.holder.{alias}"
        if meta.get("class_names") != spec.class_names:
            mlflow.set_tag(tag, f"v{entry['version']} not scored: trained for other categories")
            continue
        model = mlflow.pyfunc.load_model(str(model_dir))
        predicted = np.concatenate(
            [model.predict(np.asarray(val.images[i : i + 16])) for i in range(0, len(val.images), 16)]
        ).astype(np.uint8)
        confusion = evaluation.confusion_per_image(
            np.asarray(val.masks), predicted, len(spec.class_names), val.file_names
        )
        metrics = evaluation.split_metrics(confusion, spec.class_names)
        mlflow.log_metrics({f"holder.{alias}.{k}": v for k, v in metrics.items()})
        mlflow.set_tags({f"{tag}.version": entry["version"], f"{tag}.run_id": entry["run_id"], tag: "scored"})
        np.savez_compressed(
            tmp / f"holder.{alias}.npz",
            confusion=confusion,
            file_names=np.array(val.file_names),
            eval_set=np.array(eval_set),
        )
        mlflow.log_artifact(str(tmp / f"holder.{alias}.npz"), "evaluation")
        scored.append(alias)
    return scored
