"""The templates `flowops init` writes: the segmentation one is this repository's own project files."""

from __future__ import annotations

import pytest

from flowops.cli.init import TEMPLATES

from ..conftest import REPO

TEMPLATE_ROOT = REPO / "src" / "flowops" / "templates"
SHARED = ["MLproject", "conda.yaml", "registry_policy.yaml", "experiments/baseline.yaml", "experiments/schema.json"]


@pytest.mark.parametrize("name", SHARED)
def test_the_segmentation_template_is_this_repositorys_project(name):
    """One project, two places: the template must not drift from the files this repository trains with."""
    assert (TEMPLATE_ROOT / "segmentation" / name).read_text() == (REPO / name).read_text(), (
        f"copy {name} to src/flowops/templates/segmentation/{name}"
    )


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_has_what_a_repository_needs(template):
    folder = TEMPLATE_ROOT / template
    for name in ("MLproject", "registry_policy.yaml", "README.md", ".gitignore"):
        assert (folder / name).is_file(), f"{template}: {name} is missing"
    assert sorted(p.suffix for p in (folder / "experiments").iterdir() if p.suffix == ".yaml")
