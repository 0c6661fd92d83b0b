"""The requirement line that installs exactly this flowops, for the workflows `flowops init` writes.

A bare `flowops==0.1.0` from the default index installs someone else's package (#31), and a bare
name of our own still trusts whatever the index serves on the day. A pin here is one of:

- `flowops-gitops @ git+URL@<commit>`: a git URL at a full commit;
- `flowops-gitops @ URL#sha256=<hex>`: a release file checked against its hash;
- `flowops-gitops==V --hash=sha256:<hex> ...`: the released files of that version, by hash.

pip checks the commit or the hash; the setup-flowops action installs the pin without its
dependencies (hash-checking mode covers only this one line), then flowops' dependencies and
extras by name, and fails if the second step replaced the pinned flowops.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from urllib.parse import unquote, urlparse

from flowops import DISTRIBUTION
from flowops.errors import FlowopsError

COMMIT = re.compile(r"[0-9a-f]{40}")
SHA256 = re.compile(r"[0-9a-f]{64}")
HASH_OPTION = re.compile(r"--hash=sha256:([0-9a-f]{64})")
PIN_HELP = f"pass --pin '{DISTRIBUTION} @ git+https://github.com/OWNER/REPO@<full commit>'"


@dataclass(frozen=True)
class Pin:
    """A checked requirement line, and where it came from (said by `flowops init`)."""

    line: str
    source: str


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check(line: str) -> str:
    """The pin, one line, or a FlowopsError naming what is missing."""
    text = " ".join(line.replace("\\\n", " ").split())
    parsed = re.fullmatch(r"([A-Za-z0-9._-]+)\s*(.*)", text)
    if not parsed:
        raise FlowopsError(f"--pin {text!r}: not a requirement; {PIN_HELP}")
    name, rest = parsed.groups()
    if _canonical(name) != DISTRIBUTION:
        raise FlowopsError(
            f"--pin {text!r}: names {name!r}, not {DISTRIBUTION!r} (the PyPI project `flowops` is an unrelated package)"
        )
    if rest.startswith("@"):
        url = rest[1:].split()[0] if rest[1:].split() else ""
        if url.startswith("git+"):
            if not COMMIT.fullmatch(url.rsplit("@", 1)[-1]):
                raise FlowopsError(f"--pin {text!r}: a git URL must end in @<40-hex commit>, not a branch or tag")
            return text
        fragment = urlparse(url).fragment
        if not (fragment.startswith("sha256=") and SHA256.fullmatch(fragment[7:])):
            raise FlowopsError(f"--pin {text!r}: a file URL must end in #sha256=<64 hex>")
        return text
    if not (re.match(r"==[^\s*]+(\s|$)", rest) and HASH_OPTION.search(rest)):
        raise FlowopsError(f"--pin {text!r}: needs ==VERSION with --hash=sha256:<64 hex>, a git commit or a file hash")
    return text


def own_pin(version: str | None = None) -> Pin:
    """The pin of the flowops running now, from how it was installed (PEP 610's direct_url.json)."""
    try:
        dist = distribution(DISTRIBUTION)
    except PackageNotFoundError as exc:
        raise FlowopsError(f"{DISTRIBUTION} is not installed as a distribution: {PIN_HELP}") from exc
    version = version or dist.version
    direct = json.loads(dist.read_text("direct_url.json") or "null")
    if direct is None:
        return _from_index(version)
    url = direct["url"]
    if "vcs_info" in direct:
        commit = direct["vcs_info"].get("commit_id", "")
        return Pin(check(f"{DISTRIBUTION} @ git+{url}@{commit}"), "the git commit it was installed from")
    if "archive_info" in direct:
        digest = (direct["archive_info"].get("hashes") or {}).get("sha256", "")
        if not digest:
            raise FlowopsError(f"installed from {url} without a recorded hash: {PIN_HELP}")
        return Pin(check(f"{DISTRIBUTION} @ {url.split('#')[0]}#sha256={digest}"), "the file it was installed from")
    return _from_checkout(Path(unquote(urlparse(url).path)))


def _from_checkout(folder: Path) -> Pin:
    """A local (editable) install: the checkout's commit, at its origin when it has one."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not COMMIT.fullmatch(commit):
        raise FlowopsError(f"installed from {folder}, which is not a git checkout with a commit: {PIN_HELP}")
    origin = git("remote", "get-url", "origin")
    where = origin if origin.startswith(("https://", "ssh://", "git@")) else folder.resolve().as_uri()
    if where.startswith("git@"):  # scp-like syntax is not a URL pip reads
        where = "ssh://" + where.replace(":", "/", 1)
    note = "; it has uncommitted changes the pin does not hold" if git("status", "--porcelain") else ""
    return Pin(check(f"{DISTRIBUTION} @ git+{where}@{commit}"), f"the commit of the checkout {folder}{note}")


def _from_index(version: str) -> Pin:
    """Installed from an index: hash the released wheel, fetched from the configured index."""
    with tempfile.TemporaryDirectory() as folder:
        fetched = subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"),
                *("--dest", folder, f"{DISTRIBUTION}=={version}"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        wheels = sorted(Path(folder).glob("*.whl"))
        if fetched.returncode != 0 or not wheels:
            why = (fetched.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise FlowopsError(f"could not fetch {DISTRIBUTION}=={version} to hash it ({why}): {PIN_HELP}")
        hashes = " ".join(f"--hash=sha256:{hashlib.sha256(w.read_bytes()).hexdigest()}" for w in wheels)
    return Pin(check(f"{DISTRIBUTION}=={version} {hashes}"), "the released wheel on the configured index")
