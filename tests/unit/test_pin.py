"""The requirement `flowops init` writes for the workflows: never a bare name from the default index (#31)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flowops import DISTRIBUTION
from flowops.errors import FlowopsError
from flowops.pin import check, own_pin

from ..conftest import REPO

COMMIT = "0123456789abcdef0123456789abcdef01234567"
HASH = "ab" * 32


@pytest.mark.parametrize(
    "line",
    [
        f"flowops-gitops @ git+https://github.com/acme/flowops@{COMMIT}",
        f"flowops_gitops @ git+ssh://git@github.com/acme/flowops@{COMMIT}",
        f"flowops-gitops @ https://files.example/flowops_gitops-0.2.0-py3-none-any.whl#sha256={HASH}",
        f"flowops-gitops==0.2.0 --hash=sha256:{HASH}",
        f"Flowops.GitOps==0.2.0 \\\n    --hash=sha256:{HASH} --hash=sha256:{'cd' * 32}",
    ],
)
def test_a_pin_by_commit_or_hash_is_accepted(line):
    assert check(line) == " ".join(line.replace("\\\n", " ").split())


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        ("flowops==0.1.0", "names 'flowops', not 'flowops-gitops' (the PyPI project `flowops` is an unrelated"),
        (f"flowops @ git+https://github.com/acme/flowops@{COMMIT}", "names 'flowops'"),
        ("flowops-gitops==0.2.0", "needs ==VERSION with --hash=sha256:<64 hex>"),
        ("flowops-gitops", "needs ==VERSION"),
        ("flowops-gitops>=0.2 --hash=sha256:" + HASH, "needs ==VERSION"),
        ("flowops-gitops @ git+https://github.com/acme/flowops@main", "must end in @<40-hex commit>, not a branch"),
        ("flowops-gitops @ git+https://github.com/acme/flowops", "must end in @<40-hex commit>"),
        ("flowops-gitops @ https://files.example/f.whl", "must end in #sha256=<64 hex>"),
        ("flowops-gitops @ https://files.example/f.whl#md5=abc", "must end in #sha256=<64 hex>"),
        ("", "not a requirement"),
    ],
)
def test_a_pin_that_trusts_an_index_or_names_another_package_is_refused(line, rule):
    with pytest.raises(FlowopsError) as refused:
        check(line)
    assert rule in str(refused.value) and "\n" not in str(refused.value)


def test_this_checkouts_install_pins_its_commit():
    """The suite runs an editable install of this checkout: the pin is its HEAD."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
    pin = own_pin()
    assert pin.line.startswith(f"{DISTRIBUTION} @ git+") and pin.line.endswith(f"@{head.stdout.strip()}")
    assert "the commit of the checkout" in pin.source


def _installed(tmp_path, monkeypatch, direct_url):
    """A distribution of flowops-gitops ahead of the real one on sys.path, installed as `direct_url` says."""
    info = tmp_path / "flowops_gitops-0.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flowops-gitops\nVersion: 0.2.0\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])


def test_a_git_install_pins_its_commit(tmp_path, monkeypatch):
    _installed(
        tmp_path,
        monkeypatch,
        {"url": "https://github.com/acme/flowops", "vcs_info": {"vcs": "git", "commit_id": COMMIT}},
    )
    assert own_pin().line == f"flowops-gitops @ git+https://github.com/acme/flowops@{COMMIT}"


def test_a_file_install_pins_its_hash_and_one_without_a_hash_is_refused(tmp_path, monkeypatch):
    url = "https://files.example/flowops_gitops-0.2.0-py3-none-any.whl"
    _installed(tmp_path, monkeypatch, {"url": url, "archive_info": {"hashes": {"sha256": HASH}}})
    assert own_pin().line == f"flowops-gitops @ {url}#sha256={HASH}"
    (tmp_path / "flowops_gitops-0.2.0.dist-info" / "direct_url.json").write_text(
        json.dumps({"url": url, "archive_info": {}})
    )
    with pytest.raises(FlowopsError, match="without a recorded hash: pass --pin"):
        own_pin()


def test_an_index_install_that_cannot_fetch_its_release_to_hash_it_says_pass_pin(tmp_path, monkeypatch):
    """Nothing published here: the configured index has no flowops-gitops, so no pin is guessed."""
    _installed(tmp_path, monkeypatch, None)
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "empty-index").as_uri())
    monkeypatch.setenv("PIP_NO_INDEX", "")
    (tmp_path / "empty-index").mkdir()
    with pytest.raises(FlowopsError, match=r"could not fetch flowops-gitops==0\.2\.0 to hash it .*: pass --pin"):
        own_pin()
