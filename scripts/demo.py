"""`make demo`: the flowops loop on the embedded default store, as far as it exists.

Now: validate the example experiments and show what each one is.
"""

from __future__ import annotations

import subprocess
import sys

from rich.console import Console
from rich.table import Table

from flowops.validate import default_paths, load_experiment

console = Console()


def main() -> int:
    console.rule("1. validate the experiments (what every PR push runs first)")
    if subprocess.run(["flowops", "validate"]).returncode != 0:
        return 1
    table = Table(title="experiments/")
    for column in ("file", "name", "model", "epochs", "lr", "spec sha256"):
        table.add_column(column)
    for path in default_paths():
        if path.parent.name != "experiments":
            continue
        spec = load_experiment(path)
        table.add_row(str(path), spec.name, f"{spec.architecture}/{spec.backbone}", str(spec.epochs), str(spec.learning_rate), spec.sha256()[:12])
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
