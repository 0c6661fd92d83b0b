"""The segmentation template's commands: `flowops data synth` and `flowops data coco` (entry point
group `flowops.commands`: the engine's CLI adds what is installed)."""

from __future__ import annotations

from pathlib import Path

import click

from flowops.errors import FlowopsError


@click.group()
def data() -> None:
    """Datasets: generate synthetic COCO-format data, fetch real COCO."""


@data.command("synth")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write the dataset to.")
@click.option(
    "--images",
    type=click.IntRange(5, 100_000),
    default=120,
    show_default=True,
    help="Number of images (80% train, 20% val).",
)
@click.option("--size", default="160x120", show_default=True, help="Image size as WIDTHxHEIGHT.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same dataset).")
def data_synth(out: Path, images: int, size: str, seed: int) -> None:
    """Write a small synthetic COCO-format dataset (JPEGs + instances_{train,val}.json)."""
    from flowops.segmentation.data.synth import generate

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise FlowopsError(f"--size: expected WIDTHxHEIGHT such as 160x120 (got {size!r})") from None
    if min(width, height) < 32:
        raise FlowopsError(f"--size: width and height must be >= 32 (got {size})")
    files = generate(out, images=images, width=width, height=height, seed=seed)
    click.echo(f"wrote {images} images to {out} ({', '.join(str(p) for p in files.values())})")


@data.command("coco")
@click.option("--categories", required=True, help="Comma-separated COCO category names, e.g. cat,dog.")
@click.option("--splits", default="train2017,val2017", show_default=True, help="Comma-separated splits.")
@click.option(
    "--dest",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="FLOWOPS_COCO_DIR",
    default=Path.home() / ".cache" / "flowops" / "coco",
    show_default=True,
    help="Where the dataset goes ($FLOWOPS_COCO_DIR; experiments with dataset: coco read it there).",
)
@click.option(
    "--mirror", default="http://images.cocodataset.org", show_default=True, help="Base URL with the COCO host's layout."
)
@click.option("--max-images", type=click.IntRange(1), help="Cap per split (the lowest image ids: deterministic).")
@click.option("--workers", type=click.IntRange(1, 64), default=8, show_default=True, help="Parallel downloads.")
def data_coco(categories: str, splits: str, dest: Path, mirror: str, max_images: int | None, workers: int) -> None:
    """Download the COCO 2017 images holding some categories: parallel, resumable, verified."""
    from rich.console import Console

    from flowops.segmentation.data import download as dl

    names = dl.check_categories([c.strip() for c in categories.split(",") if c.strip()])
    wanted_splits = [s.strip() for s in splits.split(",") if s.strip()]
    unknown = [s for s in wanted_splits if s not in dl.SPLITS]
    if unknown:
        raise FlowopsError(f"--splits: unknown split {unknown[0]!r}; expected {', '.join(dl.SPLITS)}")
    mirror = mirror.rstrip("/")
    files = dl.fetch_annotations(mirror, dest, wanted_splits)
    wanted = {split: dl.select(files[split], names, max_images) for split in wanted_splits}
    console = Console(stderr=True)
    progress = dl.Progress(console)
    try:
        outcome = dl.download_images(mirror, dest, wanted, workers, progress)
    finally:
        progress.stop()
    total = sum(len(v) for v in wanted.values())
    if not outcome.downloaded and not outcome.failed:
        click.echo(f"nothing to download: all {total} images are present and verified in {dest}")
    else:
        click.echo(
            f"downloaded {len(outcome.downloaded)} images ({outcome.bytes / 2**20:.1f} MiB); "
            f"{len(outcome.present)} were already present"
        )
    click.echo(
        f"dataset fingerprint {outcome.fingerprint} ({total - len(outcome.failed)} of {total} images, "
        f"manifest {dest / 'manifest.json'})"
    )
    if outcome.failed:
        for key, reason in sorted(outcome.failed.items()):
            click.echo(f"failed: {key}: {reason}", err=True)
        raise FlowopsError(f"{len(outcome.failed)} of {total} images failed; run the same command again to retry them")


COMMANDS = [data]
