"""`flowops init`: a ready repository from a template."""

from __future__ import annotations

from pathlib import Path

import click

from flowops.errors import FlowopsError

TEMPLATES = ("tabular", "segmentation")
REQUIREMENT = "flowops-requirement.txt"  # under .github/: read by the setup-flowops action
FIRST_STEPS = {
    "tabular": "flowops validate && flowops train experiments/baseline.yaml",
    "segmentation": (
        "flowops data synth --out data/synth && flowops validate && flowops train experiments/baseline.yaml"
    ),
}


@click.command()
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--template",
    type=click.Choice(TEMPLATES),
    default="tabular",
    show_default=True,
    help=(
        "tabular: a scikit-learn classifier on a dataset that ships with scikit-learn (nothing is downloaded); "
        "segmentation: flowops' own image segmentation trainer (needs the train extra)."
    ),
)
def init(folder: Path, template: str) -> None:
    """Write a ready flowops repository (MLproject, experiments, policy, trainer) into FOLDER."""
    from importlib.metadata import version
    from importlib.resources import files

    if folder.exists() and any(folder.iterdir()):
        raise FlowopsError(f"{folder}: not empty; flowops init writes into a new or empty folder")
    source = files("flowops.templates") / template
    written = _copy(source, folder)
    written += _copy(files("flowops.templates") / "github", folder / ".github")  # the PR and merge workflows
    (folder / ".github" / REQUIREMENT).write_text(
        "# The flowops the workflows install (pinned; a private index or a git URL works too)\n"
        f"flowops=={version('flowops')}\n"
    )
    click.echo(f"wrote {len(written) + 1} files to {folder} from the {template} template")
    click.echo(f"next: cd {folder} && git init && {FIRST_STEPS[template]}")


def _copy(source, target: Path) -> list[Path]:
    """Copy a package folder (a Traversable) into `target`, recursively."""
    written = []
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name == "__pycache__":
            continue
        if entry.is_dir():
            written += _copy(entry, target / entry.name)
        else:
            (target / entry.name).write_bytes(entry.read_bytes())
            written.append(target / entry.name)
    return written


COMMANDS = [init]
