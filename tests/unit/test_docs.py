"""Docs generated from the code are current; docs that quote the code quote what exists."""

import re

from flowops.cli.main import cli
from flowops.cli.reference import render

from ..conftest import REPO


def test_reference_is_current():
    assert (REPO / "docs" / "reference.md").read_text() == render(cli), (
        "run `flowops docs` and commit docs/reference.md"
    )


def test_reference_covers_every_field_and_command():
    from flowops.cli import cli
    from flowops.segmentation.experiment import ExperimentSpec
    from flowops.spec.policy import RegistryPolicy

    text = render(cli)
    for name in [*ExperimentSpec.model_fields, *RegistryPolicy.model_fields]:
        assert f"| `{name}` |" in text, name
    for name in cli.commands:
        assert f"### `flowops {name}`" in text, name


def test_troubleshooting_quotes_messages_that_exist():
    files = [*(REPO / "src").rglob("*.py"), *(REPO / ".github").rglob("*.yml"), REPO / "tests" / "conftest.py"]
    sources = "\n".join(p.read_text() for p in files)  # tests/conftest.py: what `make test` says first
    quotes = re.findall(r"\*\*Message:\*\* `([^`]+)`", (REPO / "docs" / "troubleshooting.md").read_text())
    assert len(quotes) >= 10
    for quote in quotes:
        for fragment in re.split(r"<[^>]+>", quote):
            fragment = fragment.strip()
            if len(fragment) > 3:
                assert fragment in sources, (
                    f"docs/troubleshooting.md quotes {fragment!r}, which the code no longer prints"
                )


def test_readme_links_resolve():
    text = (REPO / "README.md").read_text()
    for target in re.findall(r"\]\(((?:docs|deploy|benchmarks)/[^)#]+)\)", text):
        assert (REPO / target).exists(), target
