"""`make demo`: the flowops loop on the embedded default store, as far as it exists.

1. synthetic COCO-format data (once), 2. validate, 3. train both example experiments
through the MLflow Project, 4. a table of the runs and how to open them in the MLflow UI.
Everything goes to the repository's own embedded store (mlruns.db, mlartifacts/), so
`mlflow ui` started here afterwards shows what the demo did.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "synth"
LOGS = ROOT / ".flowops" / "demo-logs"
EXPERIMENTS = ["experiments/baseline.yaml", "experiments/unet-longer.yaml"]
URI = f"sqlite:///{ROOT / 'mlruns.db'}"

console = Console()


def step(title: str) -> None:
    console.rule(f"[bold]{title}")


def sh(*args: str, log: Path | None = None) -> subprocess.CompletedProcess:
    """Run a command from the repository root; with `log`, keep its output there."""
    if log is None:
        return subprocess.run(args, cwd=ROOT)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        return subprocess.run(args, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)


def main() -> int:
    step("1. synthetic COCO-format data (person, car, dog + distractors)")
    if (DATA / "annotations" / "instances_val.json").exists():
        console.print(f"{DATA.relative_to(ROOT)} exists, reusing it")
    elif sh("flowops", "data", "synth", "--out", str(DATA)).returncode:
        return 1

    step("2. validate the experiments (what every PR push runs first)")
    if sh("flowops", "validate").returncode:
        return 1

    step("3. train each experiment through the MLflow Project (CPU)")
    run_ids = {}
    for path in EXPERIMENTS:
        log = LOGS / (Path(path).stem + ".log")
        start = time.time()
        with console.status(f"training {path} (log: {log.relative_to(ROOT)})"):
            proc = sh("flowops", "train", path, "--tracking-uri", URI, log=log)
        lines = log.read_text().splitlines()
        if proc.returncode:
            console.print(f"[red]training {path} failed[/red]; the end of its log:")
            console.print("\n".join(lines[-15:]), markup=False)
            return 1
        summary = next(line for line in reversed(lines) if line.startswith("run ") and " FINISHED: " in line)
        run_ids[path] = summary.split()[1]
        console.print(f"{path}: {summary} in {time.time() - start:.0f} s", soft_wrap=True)

    step("4. the runs")
    runs_table(run_ids)
    console.print("Open them in the MLflow UI:")
    console.print(f"  .venv/bin/mlflow ui --backend-store-uri {URI.replace(str(ROOT) + '/', '')}", markup=False)
    return 0


def runs_table(run_ids: dict[str, str]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(URI)
    table = Table()
    for column in ("experiment", "model", "epochs", "val IoU", "per class", "run id"):
        table.add_column(column)
    for path, run_id in run_ids.items():
        run = client.get_run(run_id)
        p, m = run.data.params, run.data.metrics
        per_class = " ".join(f"{k.split('.', 1)[1]}={v:.2f}" for k, v in sorted(m.items()) if k.startswith("val_iou.") and not k.endswith("background"))
        table.add_row(run.info.run_name, f"{p['architecture']}/{p['backbone']}", p["epochs"], f"{m['val_iou']:.3f}", per_class, run_id[:8])
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
