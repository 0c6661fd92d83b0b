"""`make demo`: the flowops loop on the embedded default store, as far as it exists.

1. synthetic COCO-format data (once), 2. validate, 3. train both example experiments
through the MLflow Project, 4. a table of the runs and how to open them in the MLflow UI,
5. merges promoted, served, rolled back.
Everything goes to the demo's own embedded store (.flowops/demo/mlruns.db, artifacts beside
it), so the demo can start its registry afresh on every run without touching the store the
tutorial and your own trainings use (./mlruns.db). `flowops serve` listens on a free port
(or `--port`); whatever fails, the temporary team repository and the service are cleaned up.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from flowops.health import wait_healthy

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "synth"
LOGS = ROOT / ".flowops" / "demo-logs"
EXPERIMENTS = ["experiments/baseline.yaml", "experiments/unet-longer.yaml"]
# A deliberately weak experiment (one epoch at a tiny learning rate) that the policy keeps out.
WEAK = """# yaml-language-server: $schema=schema.json
name: weak
description: One epoch at a tiny learning rate; the policy should keep it out of production.
categories: [person, car, dog]
image_size: 64
epochs: 1
learning_rate: 0.00005
dataset:
  root: data/synth
"""
STORE = ROOT / ".flowops" / "demo"
URI = f"sqlite:///{STORE / 'mlruns.db'}"

console = Console()


def step(title: str) -> None:
    console.rule(f"[bold]{title}")


def sh(*args: str, log: Path | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run a command (from the repository root by default); with `log`, keep its output there."""
    if log is None:
        return subprocess.run(args, cwd=cwd)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        return subprocess.run(args, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The flowops loop end to end on an embedded store.")
    parser.add_argument("--port", type=int, default=0, help="port for flowops serve (default: a free one)")
    args = parser.parse_args(argv)
    STORE.mkdir(parents=True, exist_ok=True)
    step("1. synthetic COCO-format data (person, car, dog + distractors)")
    if (DATA / "annotations" / "instances_val.json").exists():
        console.print(f"{DATA.relative_to(ROOT)} exists, reusing it")
    elif sh("flowops", "data", "synth", "--out", str(DATA)).returncode:
        return 1

    step("2. validate the experiments (what every PR push runs first)")
    if sh("flowops", "validate").returncode:
        return 1

    step("3. train each experiment through the MLflow Project (CPU)")
    run_ids = train_all(EXPERIMENTS)
    if run_ids is None:
        return 1

    step("4. the runs")
    runs_table(run_ids)
    console.print("Open them in the MLflow UI:")
    console.print(f"  .venv/bin/mlflow ui --backend-store-uri {URI.replace(str(ROOT) + '/', '')}", markup=False)

    step("5. PRs merged to main -> promotion by registry_policy.yaml (a real git repository)")
    code = promotion(run_ids, args.port)
    if code == 0:
        what_next()
    return code


def what_next() -> None:
    step("what to try next")
    for line in (
        "the loop by hand, step by step:   docs/tutorial.md",
        "your own MLflow Project:          cd your-project && flowops init --existing",
        "a project of its own, end to end: make demo-own  (the tabular template)",
        "running it for a team:            docs/runners.md, docs/server.md",
    ):
        console.print(f"  {line}", markup=False, soft_wrap=True)


def train_all(paths: list[str]) -> dict[str, str] | None:
    run_ids = {}
    for path in paths:
        log = LOGS / (Path(path).stem + ".log")
        start = time.time()
        with console.status(f"training {path} (log: {shown(log)})"):
            proc = sh("flowops", "train", path, "--tracking-uri", URI, log=log)
        lines = log.read_text().splitlines()
        if proc.returncode:
            console.print(f"[red]training {path} failed[/red]; the end of its log:")
            console.print("\n".join(lines[-15:]), markup=False)
            return None
        summary = next(line for line in reversed(lines) if line.startswith("run ") and " FINISHED: " in line)
        run_ids[path] = summary.split()[1]
        console.print(f"{path}: {summary} in {time.time() - start:.0f} s", soft_wrap=True)
    return run_ids


def shown(path: Path) -> str:
    """A path as the user would type it from the repository root."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def promotion(run_ids: dict[str, str], port: int = 0) -> int:
    """A team repository in a temp dir: three PRs merged three ways, each merge promoted."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from flowops.spec.load import load_policy

    model = load_policy(ROOT / "registry_policy.yaml").model_name
    try:  # the demo starts from an empty registry; its runs stay
        MlflowClient(URI).delete_registered_model(model)
        console.print(f"(reset registered model {model!r} in the demo store)")
    except MlflowException:
        pass
    repo = Path(tempfile.mkdtemp(prefix="flowops-demo-repo-"))
    try:
        return _promotion(repo, model, run_ids, port)
    finally:  # every way out: the temporary team repository goes
        shutil.rmtree(repo, ignore_errors=True)


def _promotion(repo: Path, model: str, run_ids: dict[str, str], port: int) -> int:
    # The same code as here (tracked and untracked-but-not-ignored files), so the code tree
    # hash of the merged commits equals the one the runs were trained on.
    files = git(
        ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "--", "src", "MLproject", "conda.yaml"
    ).splitlines()
    for name in [*files, "registry_policy.yaml", "experiments/schema.json"]:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.name=demo", "-c", "user.email=demo@example.invalid", "add", "-A")
    git(
        repo,
        "-c",
        "user.name=demo",
        "-c",
        "user.email=demo@example.invalid",
        "commit",
        "-qm",
        "code and registry policy",
    )
    (repo / "weak.yaml").write_text(WEAK)
    weak_path = repo / "weak.yaml"
    if train_all([str(weak_path)]) is None:
        return 1
    merges = [
        ("merge commit", "baseline.yaml", (ROOT / "experiments/baseline.yaml").read_text()),
        ("squash merge", "unet-longer.yaml", (ROOT / "experiments/unet-longer.yaml").read_text()),
        ("fast-forward", "weak.yaml", WEAK),
    ]
    service = None
    merged_at: dict[str, str] = {}
    try:
        for how, name, text in merges:
            if name == "unet-longer.yaml":
                show_report(repo, run_ids["experiments/unet-longer.yaml"])
            before = git(repo, "rev-parse", "HEAD")
            merge(repo, how, f"experiments/{name}", text)
            after = git(repo, "rev-parse", "HEAD")
            merged_at[name] = after
            console.print(
                f"\n[bold]PR adding experiments/{name} merged ({how}): flowops promote --git-range "
                f"{before[:8]}..{after[:8]}"
            )
            sh("flowops", "promote", "--git-range", f"{before}..{after}", "--repo", str(repo), "--tracking-uri", URI)
            if service is None:
                service = Service(model, port)
            else:
                service.ask(f"after merging {name}")
        # GitOps rollback: revert the merge in git; the next promote moves production back.
        for title, target in (
            ("Rolling production back by git revert of the unet-longer merge", merged_at["unet-longer.yaml"]),
            ("And forward again by reverting the revert", "HEAD"),
        ):
            before = git(repo, "rev-parse", "HEAD")
            git(repo, "-c", "user.name=demo", "-c", "user.email=demo@example.invalid", "revert", "--no-edit", target)
            after = git(repo, "rev-parse", "HEAD")
            console.print(f"\n[bold]{title}: git revert, then flowops promote --git-range {before[:8]}..{after[:8]}")
            sh("flowops", "promote", "--git-range", f"{before}..{after}", "--repo", str(repo), "--tracking-uri", URI)
            if service is not None:
                service.ask(f"after: {title.lower()}")
        # Break-glass: move production now and hold it; git is not changed, so status shows the drift.
        console.print("\n[bold]Break-glass: flowops rollback --alias production (holds it until released)")
        sh("flowops", "rollback", "--alias", "production", "--reason", "demo: roll back once", "--tracking-uri", URI)
        if service is not None:
            service.ask("after the break-glass rollback")
        console.print("\n[bold]flowops status: the hold, and what main wants")
        sh("flowops", "status", "--repo", str(repo), "--tracking-uri", URI)
        console.print("\n[bold]flowops release --alias production, then promote: production follows main again")
        sh("flowops", "release", "--alias", "production", "--tracking-uri", URI)
        head = git(repo, "rev-parse", "HEAD")
        sh("flowops", "promote", "--git-range", f"{head}~1..{head}", "--repo", str(repo), "--tracking-uri", URI)
    finally:
        if service is not None:
            service.stop()
    console.print("\n[bold]flowops history")
    sh("flowops", "history", "--tracking-uri", URI)
    console.print("\n[bold]flowops status")
    sh("flowops", "status", "--repo", str(repo), "--tracking-uri", URI)
    return 0


class Service:
    """`flowops serve` following production, asked about one demo image after each change."""

    def __init__(self, model: str, port: int = 0):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        console.print(
            f"\n[bold]Serving production: flowops serve --model {model} --alias production --poll 1 --port {self.port}"
        )
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log = LOGS / "serve.log"
        log = self.log.open("w")
        self.proc = subprocess.Popen(
            [
                "flowops",
                "serve",
                "--model",
                model,
                "--alias",
                "production",
                "--poll",
                "1",
                "--port",
                str(self.port),
                "--tracking-uri",
                URI,
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if not wait_healthy(self.url, 300, self.proc):
            code = self.proc.poll()
            self.stop()
            said = [line for line in self.log.read_text().splitlines() if line.strip()]
            why = said[-1] if said else "no output"
            when = f"exited with code {code}" if code is not None else "did not become healthy within 300 s"
            raise SystemExit(f"flowops serve {when}: {why} (log: {self.log})")
        self.image = next((DATA / "val").glob("*.jpg")).read_bytes()
        self.version = None
        self.ask("first answer")

    def ask(self, when: str) -> None:
        import requests

        for _ in range(100):  # the service polls every second: wait for it to follow the alias
            health = requests.get(f"{self.url}/health", timeout=5).json()
            answer = requests.post(
                f"{self.url}/predict", data=self.image, headers={"Content-Type": "image/jpeg"}, timeout=60
            ).json()
            if answer["version"] == self.expected():
                break
            time.sleep(0.3)
        shares = ", ".join(f"{k} {v:.0%}" for k, v in answer["fractions"].items() if v > 0)
        console.print(
            f"  POST /predict ({when}): served by v{answer['version']} (health: v{health['version']}, swaps "
            f"{health['swaps']}): {shares}"
        )

    def expected(self) -> str:
        from mlflow.tracking import MlflowClient

        from flowops.spec.load import load_policy

        model = load_policy(ROOT / "registry_policy.yaml").model_name
        return str(MlflowClient(URI).get_model_version_by_alias(model, "production").version)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            console.print("  (service stopped)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def show_report(repo: Path, run_id: str) -> None:
    """The PR comment for the stronger experiment, while the baseline is in production."""
    from rich.markdown import Markdown

    from flowops.report.comment import sections

    out = ROOT / "report" / "unet-longer"
    console.print(f"\n[bold]The PR's bot comment: flowops report --run {run_id[:8]}")
    if sh("flowops", "report", "--run", run_id, "--out", str(out), "--tracking-uri", URI, cwd=repo).returncode == 0:
        console.print(
            Markdown(sections((out / "report.md").read_text(), "Metrics", "Hyperparameters", "What merging will do"))
        )
        console.print(f"full report with plots: {out.relative_to(ROOT)}/report.md")


def merge(repo: Path, how: str, path: str, text: str) -> None:
    """A PR branch adding one experiment, merged into main the way `how` says."""
    ident = ["-c", "user.name=demo", "-c", "user.email=demo@example.invalid"]
    git(repo, "checkout", "-q", "-b", "pr")
    (repo / path).write_text(text)
    git(repo, "add", path)
    git(repo, *ident, "commit", "-qm", f"Add {path}")
    git(repo, "checkout", "-q", "main")
    if how == "merge commit":
        git(repo, *ident, "merge", "-q", "--no-ff", "pr", "-m", f"Merge pull request: {path}")
    elif how == "squash merge":
        git(repo, "merge", "-q", "--squash", "pr")
        git(repo, *ident, "commit", "-qm", f"{path} (squashed)")
    else:
        git(repo, "merge", "-q", "--ff-only", "pr")
    git(repo, "branch", "-q", "-D", "pr")


def runs_table(run_ids: dict[str, str]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(URI)
    table = Table()
    for column in ("experiment", "model", "epochs", "val IoU", "per class", "run id"):
        table.add_column(column)
    for _path, run_id in run_ids.items():
        run = client.get_run(run_id)
        p, m = run.data.params, run.data.metrics
        per_class = " ".join(
            f"{k.split('.', 1)[1]}={v:.2f}"
            for k, v in sorted(m.items())
            if k.startswith("val_iou.") and not k.endswith("background")
        )
        table.add_row(
            run.info.run_name,
            f"{p['architecture']}/{p['backbone']}",
            p["epochs"],
            f"{m['val_iou']:.3f}",
            per_class,
            run_id[:8],
        )
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
