"""Load on one tracking server: N concurrent writers logging metric batches (loopback only).

    .venv/bin/python benchmarks/server_load.py [--writers 8] [--batches 20] [--per-batch 50]

starts `flowops server` on a fresh PostgreSQL database (127.0.0.1:5432) with a local artifact
folder, runs the writers, checks that every metric point arrived, prints the throughput and
records it in docs/BENCHMARKS.md. Bounded: writers x batches requests, each of per-batch points.
tests/integration/test_server.py runs `load()` against its own server for correctness.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

KEYS = 10  # metric keys per run; a batch holds per_batch // KEYS steps of each


def _writer(args: tuple) -> tuple[str, float]:
    uri, experiment_id, index, batches, per_batch = args
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.create_run(experiment_id, run_name=f"writer-{index}")
    steps = per_batch // KEYS
    start = time.perf_counter()
    for b in range(batches):
        now = int(time.time() * 1000)
        metrics = [
            Metric(f"m{k}", float(b * steps + s + k), now, b * steps + s) for s in range(steps) for k in range(KEYS)
        ]
        client.log_batch(run.info.run_id, metrics=metrics)
    client.set_terminated(run.info.run_id)
    return run.info.run_id, time.perf_counter() - start


def load(uri: str, writers: int = 8, batches: int = 20, per_batch: int = 50, experiment: str = "load") -> dict:
    """Run the writers in parallel processes; count what arrived."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(writers) as pool:
        results = pool.map(_writer, [(uri, experiment_id, i, batches, per_batch) for i in range(writers)])
    seconds = time.perf_counter() - start
    steps = batches * (per_batch // KEYS)
    missing = 0
    for run_id, _ in results:
        for k in range(KEYS):
            history = client.get_metric_history(run_id, f"m{k}")
            missing += steps - len({m.step for m in history})
    points = writers * batches * (per_batch // KEYS) * KEYS
    return {
        "writers": writers,
        "requests": writers * batches,
        "points": points,
        "missing": missing,
        "seconds": seconds,
        "points_per_s": points / seconds,
        "requests_per_s": writers * batches / seconds,
    }


def main() -> None:
    import shutil
    import subprocess
    import sys
    import tempfile
    import uuid
    from pathlib import Path

    import psycopg
    import requests

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--per-batch", type=int, default=50)
    args = parser.parse_args()
    db = f"flowops_bench_{uuid.uuid4().hex[:8]}"
    admin = "postgresql://postgres@127.0.0.1:5432"
    with psycopg.connect(f"{admin}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    artifacts = Path(tempfile.mkdtemp())
    port = 5599
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("flowops")),
            "server",
            "--backend-store-uri",
            f"{admin}/{db}",
            "--artifacts-destination",
            artifacts.as_uri(),
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        uri = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if requests.get(f"{uri}/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        stats = load(uri, args.writers, args.batches, args.per_batch)
    finally:
        os.killpg(server.pid, 9)
        server.wait()
        with psycopg.connect(f"{admin}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        shutil.rmtree(artifacts, ignore_errors=True)
    line = (
        f"| {stats['writers']} writers, {stats['requests']} log_batch requests of {args.per_batch} points | "
        f"{stats['points']} points in {stats['seconds']:.1f} s | {stats['points_per_s']:.0f} points/s, "
        f"{stats['requests_per_s']:.1f} requests/s | {stats['missing']} missing |"
    )
    print(line)
    from results import record

    record(
        "Tracking server load",
        ["| load | time | throughput | check |", "|---|---|---|---|", line],
        "`.venv/bin/python benchmarks/server_load.py` (mlflow server, 2 workers, PostgreSQL 15 on 127.0.0.1)",
    )


if __name__ == "__main__":
    main()
