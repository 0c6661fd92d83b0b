"""docs/tutorial.md runs: its `sh` blocks, in order, in a temporary copy of the repository."""

from __future__ import annotations

import os
import re
import subprocess

from ..conftest import REPO
from .conftest import BIN
from .test_promote import TeamRepo


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)


def test_the_tutorial_runs_from_a_copy_of_the_repository(tmp_path):
    blocks = shell_blocks((REPO / "docs" / "tutorial.md").read_text())
    assert len(blocks) >= 8
    repo = TeamRepo(tmp_path / "clone", policy=None)
    script = "set -euo pipefail\n" + "\n".join(f"echo '### block {i}'\n{b}" for i, b in enumerate(blocks))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "FLOWOPS_CACHE_DIR": str(tmp_path / "cache")}
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"):
        env.pop(key, None)  # the tutorial uses the embedded default store of the clone
    proc = subprocess.run(["bash", "-c", script], cwd=repo.path, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout
    assert proc.returncode == 0, (out + proc.stderr)[-5000:]
    assert "/tmp/oops.yaml:3: epochs: must be >= 1 (got 0)" in proc.stderr and "exit code 1" in out
    assert "staging: moved unset -> v1 (experiments/my-first.yaml)" in out
    assert "staging: moved v1 -> v2 (experiments/my-second.yaml)" in out
    served = re.findall(r'"status":"ok","version":"(\d+)"', out)  # each /health the tutorial printed
    assert served == ["1", "2", "1"], out[-3000:]
    assert "staging: v2 -> v1 (rollback: tutorial: back to my-first)" in out
    assert (repo.path / "mlruns.db").exists() and (repo.path / "report" / "my-first" / "predictions.png").exists()
