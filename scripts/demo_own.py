"""`make demo-own`: the loop on a project of its own (the tabular template: scikit-learn on bundled
data), in .flowops/demo-own/: init, commit, validate, train, promote, a PR that edits the experiment,
its merge promoted, its revert rolled back. Embedded store; nothing is downloaded."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / ".flowops" / "demo-own"
REPO = HERE / "tabular"
IDENT = ["-c", "user.name=demo", "-c", "user.email=demo@example.invalid"]


def say(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(*args: str, cwd: Path = REPO) -> None:
    print("$ " + " ".join(args), flush=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{HERE / 'mlruns.db'}"}
    if subprocess.run(args, cwd=cwd, env=env).returncode:
        raise SystemExit(f"demo-own: `{' '.join(args)}` failed (above)")


def main() -> int:
    shutil.rmtree(HERE, ignore_errors=True)
    HERE.mkdir(parents=True)
    say("1. a repository of its own: flowops init --template tabular")
    run("flowops", "init", "--template", "tabular", str(REPO), cwd=HERE)
    run("git", "init", "-q", "-b", "main")
    run("git", "add", "-A")
    run("git", *IDENT, "commit", "-qm", "flowops init")
    say("2. validate and train (its own MLproject, through MLflow)")
    run("flowops", "validate")
    run("flowops", "train", "experiments/baseline.yaml")
    run("flowops", "train", "experiments/strong-regularisation.yaml")
    say("3. promote main (the first commit: nothing before it)")
    run("flowops", "promote", "--git-range", "HEAD~1..HEAD")
    say("4. a PR changes the experiment; it trains on its branch, then merges")
    run("git", "checkout", "-q", "-b", "stronger")
    baseline = REPO / "experiments" / "baseline.yaml"
    baseline.write_text(baseline.read_text().replace("C: 1.0", "C: 0.5"))
    run("git", *IDENT, "commit", "-qam", "baseline: C 0.5")
    run("flowops", "train", "experiments/baseline.yaml")
    run("git", "checkout", "-q", "main")
    run("git", *IDENT, "merge", "-q", "--no-ff", "stronger", "-m", "Merge pull request #1")
    run("flowops", "promote", "--git-range", "HEAD~1..HEAD")
    say("5. roll back by reverting the merge")
    run("git", *IDENT, "revert", "--no-edit", "-m", "1", "HEAD")
    run("flowops", "promote", "--git-range", "HEAD~1..HEAD")
    run("flowops", "status")
    say("what to try next")
    print(f"  the repository: {REPO.relative_to(ROOT)}  (its README says what each file is)")
    print("  your own MLflow Project: cd your-project && flowops init --existing  (docs/own-project.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
