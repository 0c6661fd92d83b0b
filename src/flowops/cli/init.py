"""`flowops init`: a ready repository from a template."""

from __future__ import annotations

from pathlib import Path

import click

from flowops.cli.base import tracking_option
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
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False), default=".")
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
@click.option(
    "--pin",
    "pin_line",
    metavar="REQUIREMENT",
    help=(
        "The flowops the generated workflows install: 'flowops-gitops @ git+URL@<commit>', a file URL "
        "ending in #sha256=<hash>, or 'flowops-gitops==V --hash=sha256:<hash>'. Default: this flowops, "
        "pinned by how it was installed."
    ),
)
@click.option(
    "--existing",
    is_flag=True,
    help=(
        "Onboard the MLflow Project already in FOLDER (default: here): flowops.yaml, a policy, a first "
        "experiment from the MLproject's defaults and the workflows; never overwrites a file."
    ),
)
@click.option("--entry-point", default="main", show_default=True, help="With --existing: the entry point to train.")
@click.option("--metric", help="With --existing: the metric that ranks models (default: from the project's runs).")
@click.option(
    "--direction", type=click.Choice(["min", "max"]), help="With --existing: lower (min) or higher is better."
)
@tracking_option
def init(
    folder: Path,
    template: str,
    pin_line: str | None,
    existing: bool,
    entry_point: str,
    metric: str | None,
    direction: str | None,
    tracking_uri: str | None,
) -> None:
    """Write a ready flowops repository (MLproject, experiments, policy, trainer) into FOLDER, or with
    --existing onboard the MLflow Project in FOLDER."""
    from importlib.resources import files

    from flowops.pin import Pin, check, own_pin

    if existing:
        _existing(folder, entry_point, metric, direction, tracking_uri, pin_line)
        return
    if folder.exists() and any(folder.iterdir()):
        hint = "; an MLflow Project is here: flowops init --existing" if (folder / "MLproject").is_file() else ""
        raise FlowopsError(f"{folder}: not empty; flowops init writes into a new or empty folder{hint}")
    from flowops.adopt import Adopted, write_new

    pin = Pin(check(pin_line), "--pin") if pin_line is not None else own_pin()  # before writing anything
    planned = _texts(files("flowops.templates") / template)
    planned.update(_texts(files("flowops.templates") / "github", ".github"))  # the PR and merge workflows
    planned[f".github/{REQUIREMENT}"] = _requirement(pin)
    done = Adopted()
    write_new(folder, planned, done)
    click.echo(f"wrote {len(done.written)} files to {folder} from the {template} template")
    click.echo(f"the workflows install {pin.line}")
    # commit first: a run trained from uncommitted code can never ship (train says so too)
    click.echo(
        f'next: cd {folder} && git init && git add -A && git commit -m "flowops init" && {FIRST_STEPS[template]}'
    )


def _requirement(pin) -> str:
    return (
        f"# The flowops the workflows install, pinned to {pin.source}.\n"
        "# pip checks the commit or the hash; `flowops init --pin` says what else is accepted.\n"
        f"{pin.line}\n"
    )


def _existing(
    folder: Path,
    entry: str,
    metric: str | None,
    direction: str | None,
    tracking_uri: str | None,
    pin_line: str | None,
) -> None:
    """init --existing: plan every file first (the pin, the metric), then write only what is missing."""
    import sys
    from importlib.resources import files

    from flowops.adopt import adopt, write_new
    from flowops.pin import Pin, check, own_pin

    planned, done = adopt(folder, entry, metric, direction, tracking_uri, ask=sys.stdin.isatty())
    pin = Pin(check(pin_line), "--pin") if pin_line is not None else own_pin()
    planned[f".github/{REQUIREMENT}"] = _requirement(pin)
    planned.update(_texts(files("flowops.templates") / "github", ".github"))
    write_new(folder, planned, done)
    for note in done.notes:
        click.echo(note)
    for path in done.written:
        click.echo(f"wrote {path}")
    for path in done.kept:
        click.echo(f"kept {path} (it exists; not overwritten)")
    click.echo(f"the workflows install {pin.line}")
    click.echo(
        f'next: cd {folder} && flowops validate && git add -A && git commit -m "flowops init" '
        "&& flowops train experiments/baseline.yaml"
    )


def _texts(source, prefix: str = "") -> dict[str, str]:
    """path -> text of a package folder (a Traversable), recursively: what init writes."""
    out: dict[str, str] = {}
    for entry in source.iterdir():
        if entry.name == "__pycache__":
            continue
        name = f"{prefix}/{entry.name}" if prefix else entry.name
        out.update(_texts(entry, name) if entry.is_dir() else {name: entry.read_text()})
    return out


@click.command()
@click.option(
    "--project",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=".",
    show_default=True,
    help="The MLflow Project's folder.",
)
def requirements(project: Path) -> None:
    """Print the pip requirements of the project's own environment (requirements.txt, python_env.yaml or
    conda.yaml's pip list), for a job that installs it and nothing else."""
    from flowops.spec.environment import requirements as read

    found = read(project)
    for line in found.lines:
        click.echo(line)
    for note in found.notes:
        click.echo(f"note: {note}", err=True)
    if not found.source:
        click.echo(f"note: {project}: no requirements.txt, python_env.yaml or conda.yaml: nothing to install", err=True)


COMMANDS = [init, requirements]
