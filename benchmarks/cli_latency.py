"""CLI latency: cold-process commands as CI runs them, with 1,000 runs in the store.

    .venv/bin/python benchmarks/cli_latency.py [--runs 1000]

- `flowops validate` on 20 experiment files (target <= 0.5 s)
- `flowops report` (target <= 10 s) and `flowops promote --dry-run` (target <= 5 s) with
  1,000 runs in a SQLite store and in PostgreSQL (127.0.0.1:5432, a temporary database)
Medians of 3 cold processes each; results in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def timed(args: list[str], env: dict, cwd: Path, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        proc = subprocess.run([str(BIN / "flowops"), *args], env=env, cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"flowops {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return statistics.median(times)


def fill(uri: str, runs: int, spec: dict) -> str:
    """`runs` runs shaped like trainings (params, metrics, lineage tags); returns one whose spec is `spec`."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from flowops.segmentation.experiment import ExperimentSpec
    from flowops.segmentation.params import spec_to_params

    client = MlflowClient(uri)
    exp = client.create_experiment("bench-cli")
    target = None
    for i in range(runs):
        s = ExperimentSpec.model_validate({**spec, "name": spec["name"] if i == runs - 1 else f"run-{i}"})
        run = client.create_run(exp, run_name=s.name)
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, 0.1 + (i % 50) / 100, now, e) for e in (1, 2) for k in ("loss", "val_loss", "iou", "val_iou")
        ]
        metrics += [Metric(f"val_iou.{c}", 0.3, now, 0) for c in ("background", "person")]
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(k, v) for k, v in spec_to_params(s).items()],
            tags=[RunTag("flowops.spec_sha256", s.sha256()), RunTag("flowops.code_tree", "0" * 40)],
        )
        client.set_terminated(run.info.run_id)
        target = run.info.run_id
    return target


def measure(uri: str, runs: int, tmp: Path) -> tuple[float, float]:
    spec = {"name": "target", "categories": ["person"], "experiment_name": "bench-cli", "dataset": {"root": "data/x"}}
    run_id = fill(uri, runs, spec)
    repo = tmp / f"repo-{uuid.uuid4().hex[:6]}"
    (repo / "experiments").mkdir(parents=True)
    (repo / "registry_policy.yaml").write_text("model_name: bench-cli\n")
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "base"], cwd=repo, check=True)
    (repo / "experiments" / "target.yaml").write_text(yaml.safe_dump(spec))
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "add"], cwd=repo, check=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    report = timed(
        ["report", "--run", run_id, "--out", str(tmp / "report"), "--policy", str(repo / "registry_policy.yaml")],
        env,
        repo,
    )
    promote = timed(["promote", "--git-range", "HEAD~1..HEAD", "--dry-run"], env, repo)
    return report, promote


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    files = []
    for i in range(20):
        path = tmp / "experiments" / f"e{i}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(
            yaml.safe_dump(
                {"name": f"e{i}", "categories": ["person", "car"], "epochs": 5 + i, "dataset": {"root": "data/x"}}
            )
        )
        files.append(str(path))
    validate = timed(["validate", *files], dict(os.environ), tmp, reps=5)
    rows = [f"| `flowops validate`, 20 files | {validate:.2f} s | <= 0.5 s |"]
    print(rows[-1], flush=True)
    sqlite = measure(f"sqlite:///{tmp / 'mlruns.db'}", args.runs, tmp)
    rows += [
        f"| `flowops report`, {args.runs} runs, SQLite | {sqlite[0]:.2f} s | <= 10 s |",
        f"| `flowops promote --dry-run`, {args.runs} runs, SQLite | {sqlite[1]:.2f} s | <= 5 s |",
    ]
    print("\n".join(rows[-2:]), flush=True)
    import psycopg

    db = f"flowops_cli_{uuid.uuid4().hex[:8]}"
    admin = "postgresql://postgres@127.0.0.1:5432"
    with psycopg.connect(f"{admin}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    try:
        pg = measure(f"{admin}/{db}", args.runs, tmp)
    finally:
        with psycopg.connect(f"{admin}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    rows += [
        f"| `flowops report`, {args.runs} runs, PostgreSQL | {pg[0]:.2f} s | <= 10 s |",
        f"| `flowops promote --dry-run`, {args.runs} runs, PostgreSQL | {pg[1]:.2f} s | <= 5 s |",
    ]
    print("\n".join(rows[-2:]), flush=True)
    sys.path.insert(0, str(Path(__file__).parent))
    from results import record

    record(
        "CLI latency",
        [
            "Cold processes (medians of 3; validate: of 5), as a CI job runs them.",
            "",
            "| command | time | target |",
            "|---|---|---|",
            *rows,
        ],
        "`.venv/bin/python benchmarks/cli_latency.py`",
    )


if __name__ == "__main__":
    main()
