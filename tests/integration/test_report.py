"""The PR report against a real MLflow store with runs, versions and aliases."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from markdown_it import MarkdownIt
from mlflow.tracking import MlflowClient
from PIL import Image

from flowops.cli import cli
from flowops.report.comment import delta_cell, params_diff

from ..conftest import REPO
from .conftest import experiment_id
from .test_promote import EchoModel

POLICY = {
    "model_name": "rep-model",
    "require_same_code": False,
    "targets": {
        "staging": {},
        "production": {"thresholds": [{"metric": "val_miou", "min": 0.2}], "improve": {"absolute": 0.01}},
    },
}
CLASSES = np.array(["background", "person", "car"])


EVAL = "e" * 64
SCHEMA = REPO / "docs" / "report.schema.json"


def confusions(seed: int, n: int = 40, accuracy: float = 0.8) -> np.ndarray:
    """Per-image confusion matrices of a model that gets `accuracy` of the pixels right, on n fixed images."""
    from flowops.segmentation.evaluation import confusion_per_image

    truth = np.random.default_rng(0).integers(0, 3, (n, 16, 16)).astype(np.uint8)  # the same images for every model
    rng = np.random.default_rng(seed)
    predicted = np.where(rng.random(truth.shape) < accuracy, truth, rng.integers(0, 3, truth.shape)).astype(np.uint8)
    return confusion_per_image(truth, predicted, 3)


def logged_run(
    name: str,
    metrics: dict,
    params: dict,
    files=("a.jpg", "b.jpg"),
    status="FINISHED",
    failure=None,
    eval_set: str | None = EVAL,
    confusion: np.ndarray | None = None,
) -> str:
    """A run as training leaves it: params, per-epoch history, samples, per-image evaluation, a model."""
    exp_id = experiment_id("reports")
    run = mlflow.start_run(experiment_id=exp_id, run_name=name)
    mlflow.log_params(params)
    mlflow.set_tags(
        {
            "flowops.experiment_file": f"experiments/{name}.yaml",
            "flowops.pr_number": "12",
            "flowops.git_commit": "a" * 40,
            **({"flowops.eval_set": eval_set, "flowops.eval_images": "40"} if eval_set else {}),
        }
    )
    for epoch in (1, 2):
        mlflow.log_metrics({k: v * epoch / 2 for k, v in metrics.items() if not k.startswith("val_iou.")}, step=epoch)
    mlflow.log_metrics({k: v for k, v in metrics.items() if k.startswith("val_iou.")})
    rng = np.random.default_rng(len(name))
    with tempfile.TemporaryDirectory() as tmp:
        np.savez_compressed(
            Path(tmp) / "samples.npz",
            file_names=np.array(files),
            images=rng.integers(0, 255, (len(files), 16, 16, 3), dtype=np.uint8),
            truth=rng.integers(0, 3, (len(files), 16, 16), dtype=np.uint8),
            predicted=rng.integers(0, 3, (len(files), 16, 16), dtype=np.uint8),
            class_names=CLASSES,
        )
        mlflow.log_artifact(str(Path(tmp) / "samples.npz"), "samples")
        if confusion is not None:
            names = np.array([f"img{i}.jpg" for i in range(len(confusion))])
            np.savez_compressed(Path(tmp) / "confusion.npz", confusion=confusion, file_names=names)
            mlflow.log_artifact(str(Path(tmp) / "confusion.npz"), "evaluation")
    mlflow.pyfunc.log_model(name="model", python_model=EchoModel(), pip_requirements=["mlflow"])
    if failure:
        mlflow.set_tag("flowops.failure", failure)
    mlflow.end_run(status)
    return run.info.run_id


def set_alias(run_id: str, alias: str) -> str:
    client = MlflowClient()
    try:
        client.create_registered_model("rep-model")
    except mlflow.exceptions.MlflowException:
        pass
    model_id = client.get_run(run_id).outputs.model_outputs[0].model_id
    mv = client.create_model_version("rep-model", f"models:/{model_id}", run_id=run_id, model_id=model_id)
    client.set_registered_model_alias("rep-model", alias, mv.version)
    return str(mv.version)


@pytest.fixture
def policy_file(tmp_path, store):
    import yaml

    path = tmp_path / "registry_policy.yaml"
    path.write_text(yaml.safe_dump(POLICY, sort_keys=False))
    return path


def report(run_id: str, out: Path, policy_file: Path, *extra: str):
    result = CliRunner().invoke(
        cli,
        ["report", "--run", run_id, "--out", str(out), "--policy", str(policy_file), *extra],
        catch_exceptions=False,
    )
    text = (out / "report.md").read_text() if (out / "report.md").exists() else ""
    return result.exit_code, result.stderr, text


BASE = {
    "val_miou": 0.40,
    "val_iou": 0.40,
    "val_loss": 0.80,
    "val_fscore": 0.50,
    "iou": 0.45,
    "val_iou.person": 0.30,
    "val_iou.car": 0.50,
}
PARAMS = {
    "epochs": "10",
    "learning_rate": "0.001",
    "backbone": "resnet18",
    "name": "base",
    "experiment_file": "experiments/base.yaml",
}


def test_report_against_production(tmp_path, policy_file, monkeypatch):
    prod = logged_run("base", BASE, PARAMS, confusion=confusions(1, accuracy=0.6))
    version = set_alias(prod, "production")
    cand_metrics = {**BASE, "val_miou": 0.45, "val_loss": 0.90, "iou": 0.5, "val_iou.person": 0.35, "val_iou.car": 0.40}
    cand = logged_run(
        "cand",
        cand_metrics,
        {**PARAMS, "epochs": "20", "name": "cand", "augment": "false", "experiment_file": "x"},
        confusion=confusions(2, accuracy=0.9),
    )
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, err, text = report(cand, tmp_path / "r", policy_file)
    assert (code, err) == (0, "")
    assert text.startswith("<!-- flowops-report: experiments/cand.yaml -->\n## flowops: cand\n")
    assert summary.read_text().startswith(text)  # the job summary gets the same markdown
    # deltas respect each metric's direction: higher val_miou is better, higher val_loss worse
    assert "| **val_miou** | 0.4500 | 0.4000 | +0.0500 (+12.5%) ▲ better |" in text
    assert "| val_loss | 0.9000 | 0.8000 | +0.1000 (+12.5%) ▼ worse |" in text
    assert "| val_fscore | 0.5000 | 0.5000 | +0.0000 (+0.0%) = |" in text
    assert "| iou (training) | 0.5000 | 0.4500 |  |" in text  # training metrics get no verdict
    assert "| car | 0.4000 | 0.5000 | dropped 0.1000 |" in text
    # the interval of the difference, from the two runs' per-image matrices, on the same images
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))
    cell = data["aliases"]["production"]["metrics"]["val_miou"]
    assert data["aliases"]["production"]["same_eval_set"] is True and cell["same_eval_set"] is True
    assert 0 < cell["ci_low"] < cell["ci_high"] and cell["confidence"] == 0.95
    assert f"- val_miou vs production v{version}: +0.0500, 95% interval [{cell['ci_low']:+.4f}, " in text
    assert "over the same 40 validation images (paired bootstrap)." in text
    # only the changed hyperparameters, excluding name and file
    assert "| `augment` | `None` | `false` |" in text and "| `epochs` | `10` | `20` |" in text
    assert "learning_rate" not in text.split("### Hyperparameters")[1].split("###")[0]
    # the preview is decide()'s verdict, and report.json holds it
    assert data["aliases"]["production"]["decision"]["promote"] is True
    assert f"- Merging this will move **`production`** from v{version} to the new version." in text
    assert "- Merging this will move **`staging`** from unset to the new version." in text
    # valid GitHub-flavoured markdown whose images all exist
    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parse(text)
    images = [c.attrs["src"] for t in tokens if t.type == "inline" for c in t.children or [] if c.type == "image"]
    assert images == ["learning_curves.png", "per_class_iou.png", "predictions.png"]
    assert sum(t.type == "table_open" for t in tokens) == 4  # header, metrics, per-class, hyperparameters
    for name in images:
        with Image.open(tmp_path / "r" / name) as im:
            im.verify()
    # panels: image | truth | production | candidate, one row per sample (figsize 2.6 x 2.4 in at 144 dpi)
    with Image.open(tmp_path / "r" / "predictions.png") as im:
        assert im.size == (int(2.6 * 144 * 4), int(2.4 * 144 * 2))


def test_different_evaluation_data_is_not_compared(tmp_path, policy_file):
    version = set_alias(logged_run("base", BASE, PARAMS, eval_set="1" * 64), "production")
    cand = logged_run("cand", {**BASE, "val_miou": 0.9}, PARAMS, eval_set="2" * 64)
    code, _, text = report(cand, tmp_path / "r", policy_file)
    assert code == 0
    assert (
        f"- **Not comparable with production v{version}**: different evaluation data (eval set 222222222222 vs 111111111111)"
        in text
    )
    assert "| **val_miou** | 0.9000 | 0.4000 | – (other data) |" in text
    assert (
        f"- **`production`** stays at v{version}: not comparable: different evaluation data "
        f"(eval set 222222222222 vs 111111111111 of v{version})"
    ) in text
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["aliases"]["production"]["same_eval_set"] is False
    assert data["aliases"]["production"]["metrics"]["val_miou"]["same_eval_set"] is False


def test_an_identical_model_is_not_distinguishable_and_a_confident_policy_keeps_the_holder(tmp_path, store):
    import yaml

    policy = {**POLICY, "targets": {"production": {"improve": {"absolute": 0.0, "confidence": 0.95}}}}
    path = tmp_path / "confident.yaml"
    path.write_text(yaml.safe_dump(policy))
    same = confusions(3)
    version = set_alias(logged_run("base", BASE, PARAMS, confusion=same), "production")
    cand = logged_run("cand", {**BASE, "val_miou": 0.41}, PARAMS, confusion=same)
    _, _, text = report(cand, tmp_path / "r", path)
    assert "95% interval [+0.0000, +0.0000]" in text and f"**not distinguishable from production v{version}**" in text
    assert f"not distinguishable from v{version} (95% interval of the difference [0, 0] contains 0)" in text
    better = logged_run("better", {**BASE, "val_miou": 0.6}, PARAMS, confusion=confusions(4, accuracy=0.95))
    _, _, text = report(better, tmp_path / "r2", path)
    assert f"- Merging this will move **`production`** from v{version} to the new version." in text


def test_each_alias_is_previewed_at_its_own_confidence_as_promote_judges_it(tmp_path, store):
    """#30: staging asks for 0.90 and production for 0.95. The report computed one interval at the
    highest level for both, so staging's preview could never pass; now each alias gets its own."""
    import yaml

    improve = {"absolute": 0.0}
    policy = {**POLICY, "targets": {"staging": {"improve": {**improve, "confidence": 0.90}},
                                    "production": {"improve": {**improve, "confidence": 0.95}}}}  # fmt: skip
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(policy))
    prod = logged_run("base", BASE, PARAMS, confusion=confusions(1, accuracy=0.6))
    staged, produced = set_alias(prod, "staging"), set_alias(prod, "production")
    cand = logged_run("cand", {**BASE, "val_miou": 0.45}, PARAMS, confusion=confusions(2, accuracy=0.9))
    code, err, text = report(cand, tmp_path / "r", path)
    assert (code, err) == (0, ""), err
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    cells = {alias: data["aliases"][alias]["metrics"]["val_miou"] for alias in ("staging", "production")}
    assert (cells["staging"]["confidence"], cells["production"]["confidence"]) == (0.9, 0.95)
    assert cells["production"]["ci_low"] < cells["staging"]["ci_low"] < cells["staging"]["ci_high"]
    assert cells["staging"]["ci_high"] < cells["production"]["ci_high"]  # the wider level, the wider interval
    for alias, version, level in (("staging", staged, "90%"), ("production", produced, "95%")):
        checks = data["aliases"][alias]["decision"]["checks"]
        assert [c["passed"] for c in checks] == [True], checks
        assert f"{level} interval of the difference" in checks[0]["detail"]
        assert f"- Merging this will move **`{alias}`** from v{version} to the new version." in text


def test_production_on_other_images_is_left_out_of_the_grid(tmp_path, policy_file):
    set_alias(logged_run("base", BASE, PARAMS, files=("x.jpg", "y.jpg")), "production")
    cand = logged_run("cand", BASE, PARAMS)
    _, _, text = report(cand, tmp_path / "r", policy_file)
    assert "Production was evaluated on other images" in text
    with Image.open(tmp_path / "r" / "predictions.png") as im:
        assert im.size == (int(2.6 * 144 * 3), int(2.4 * 144 * 2))


def _break_samples(run_id: str) -> None:
    """The run's samples artifact can no longer be read (a folder where the file was): a failed read."""
    from urllib.parse import urlparse

    folder = Path(urlparse(MlflowClient().get_run(run_id).info.artifact_uri).path) / "samples" / "samples.npz"
    folder.unlink()
    (folder / "x").mkdir(parents=True)


def test_samples_that_cannot_be_read_are_said_not_dropped(tmp_path, policy_file):
    """#32.6: a failed samples download (a 401 or 5xx on a server) silently dropped the prediction grid."""
    prod = logged_run("base", BASE, PARAMS)
    set_alias(prod, "production")
    cand = logged_run("cand", BASE, PARAMS)
    _break_samples(prod)
    code, err, text = report(cand, tmp_path / "r", policy_file)
    assert (code, err) == (0, ""), err
    assert f"Production's column is left out: samples/samples.npz of run {prod} could not be read (" in text
    with Image.open(tmp_path / "r" / "predictions.png") as im:  # the candidate's grid is still drawn
        assert im.size == (int(2.6 * 144 * 3), int(2.4 * 144 * 2))
    _break_samples(cand)
    code, err, text = report(cand, tmp_path / "r2", policy_file)
    assert (code, err) == (0, ""), err
    assert f"Not drawn: samples/samples.npz of run {cand} could not be read (" in text
    assert not (tmp_path / "r2" / "predictions.png").exists()


def test_first_model_ever(tmp_path, policy_file):
    cand = logged_run("first", {**BASE, "val_miou": 0.1}, PARAMS)
    code, _, text = report(cand, tmp_path / "r", policy_file)
    assert code == 0
    assert "No model holds any alias yet: this would be the first." in text
    assert "- **`production`** stays at unset: val_miou 0.1 fails &gt;= 0.2" in text
    assert "### Hyperparameters" not in text


@pytest.mark.parametrize(
    "status, expected",
    [
        ("FAILED", "failed: out of memory: lower batch_size or image_size"),
        ("RUNNING", "is running: no reason recorded"),
    ],
)
def test_failed_or_running_run(tmp_path, policy_file, status, expected):
    run_id = logged_run(
        "broken",
        BASE,
        PARAMS,
        status=status,
        failure="out of memory: lower batch_size or image_size" if status == "FAILED" else None,
    )
    code, _, text = report(run_id, tmp_path / "r", policy_file)
    assert code == 0
    assert f"> The training run {expected}" in text
    assert "### Metrics" not in text


def test_bad_inputs(tmp_path, policy_file, write):
    code, err, _ = report("0" * 32, tmp_path / "r", policy_file)
    assert code == 1 and err.startswith(f"run {'0' * 32}: not found in sqlite:///")
    run_id = logged_run("base", BASE, PARAMS)
    other = write("experiments/other.yaml", "name: other\ncategories: [person]\ndataset: {root: d}\n")
    code, err, _ = report(run_id, tmp_path / "r", policy_file, "--experiment", str(other))
    assert (code, err) == (
        1,
        f"run {run_id} was not trained from {other} as the working tree has it (spec sha256 differs): pass that experiment's run\n",
    )
    bad_policy = write("bad_policy.yaml", "model_name: m\nmode: sometimes\n")
    code, err, _ = report(run_id, tmp_path / "r", bad_policy)
    assert code == 1 and err.startswith(f"{bad_policy}:2: mode: unknown mode 'sometimes'")


def test_report_does_not_import_tensorflow(tmp_path, policy_file, store):
    run_id = logged_run("base", BASE, PARAMS)
    probe = (
        "import sys\nfrom flowops.cli import main\ntry:\n    main()\nexcept SystemExit as e:\n"
        "    print('TF' if 'tensorflow' in sys.modules else 'noTF', e.code)\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            probe,
            "report",
            "--run",
            run_id,
            "--out",
            str(tmp_path / "r"),
            "--policy",
            str(policy_file),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.stdout.strip().splitlines()[-1] == "noTF 0", proc.stderr[-2000:]


def test_helpers():
    assert delta_cell(0.5, 0.4, "max").endswith("▲ better") and delta_cell(0.5, 0.4, "min").endswith("▼ worse")
    assert delta_cell(0.1, 0.0, "max") == "+0.1000 ▲ better"  # no relative change against zero
    assert delta_cell(None, 0.4, "max") == "–"
    assert params_diff({"a": "1", "b": "2", "name": "x"}, {"a": "1", "b": "3", "c": "4", "name": "y"}) == {
        "b": ("3", "2"),
        "c": ("4", None),
    }
