"""`flowops serve`: an HTTP service that follows a registry alias and hot-swaps the model.

It serves the pyfunc logged at training time (so preprocessing is the training one), polls
`models:/NAME@ALIAS`, loads a new version in the background and swaps it in with one
reference assignment: a request in flight finishes on the model it started with.
"""

from __future__ import annotations

import shutil
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from flowops import plugins
from flowops.errors import FlowopsError


@dataclass
class Loaded:
    """One loaded model version; its lock serialises predictions on it."""

    model: Any  # the loaded mlflow pyfunc
    version: str
    run_id: str
    git_commit: str
    class_names: list[str]
    loaded_at: str
    image_size: int = 0  # what the model was trained at, and how its images were shrunk
    preprocess: str = ""  # an image model's: as its metadata says (flowops.segmentation.preprocess)
    lock: threading.Lock = field(default_factory=threading.Lock)
    images: bool = True  # an image model (/predict takes images); any other pyfunc: /invocations only
    adapter: plugins.ImageAdapter | None = None  # how its uploads are decoded (the template's)


def image_meta(model: Any) -> dict | None:
    """The segmentation pyfunc's metadata (class names, image size, preprocessing); None for any other model."""
    try:
        python_model = model.unwrap_python_model()
    except Exception:  # not a python_function model of flowops' own: an sklearn, xgboost, ... flavour
        return None
    meta = getattr(python_model, "meta", None)
    return meta if isinstance(meta, dict) and "class_names" in meta else None


def public_error(exc: Exception, line: str) -> str:
    """What /health, which answers anyone, may say of a failed poll or load: never the tracking
    server's address or a library's message (the service's log has those)."""
    from flowops.registry.access import UNREACHABLE

    if any(marker in line for marker in UNREACHABLE) or "Connection" in line:
        return "the tracking server cannot be reached (the service's log has the details)"
    if isinstance(exc, FlowopsError) and "://" not in line and "host=" not in line:
        return line  # flowops' own sentence, about the model (a digest that does not match, say)
    return f"the registry read or the model load failed ({type(exc).__name__}; the service's log has the details)"


class AliasFollower:
    """Holds the model behind NAME@ALIAS and keeps it current."""

    def __init__(self, client, name: str, alias: str, poll_s: float):
        self.client, self.name, self.alias, self.poll_s = client, name, alias, poll_s
        self.current: Loaded | None = None
        self.poll_error: str | None = None  # for /health, which anyone may read: no address, no detail
        self.loading: str | None = None  # the version being loaded (a swap under way), for /health
        self.swaps = 0
        self._logged: str | None = None
        self._stop = threading.Event()

    def check_alias(self) -> Any:
        """The version holding the alias now; FlowopsError if there is none (checked before serving).

        A registry that does not answer is said as such, not as "no alias".
        """
        from flowops.registry.access import checked

        mv = checked(self.client).absent_or_raise("get_model_version_by_alias", self.name, self.alias, alias=True)
        if mv is None:
            raise FlowopsError(f"model {self.name!r} has no alias {self.alias!r}: promote a model first")
        return mv

    def load(self, mv) -> Loaded:
        """Download version `mv`, check its files against the digest the import recorded, load it."""
        import tempfile

        import mlflow.artifacts
        import mlflow.pyfunc

        from flowops.hashing import MODEL_DIGEST_TAG, model_digest

        # kept while the model is served, as mlflow.pyfunc.load_model keeps its own download: the
        # model's code/ folder is on sys.path
        local = Path(tempfile.mkdtemp(prefix="flowops-serve-"))
        try:
            folder = Path(mlflow.artifacts.download_artifacts(f"models:/{self.name}/{mv.version}", dst_path=str(local)))
            expected = mv.tags.get(MODEL_DIGEST_TAG)
            if expected:
                found = model_digest(folder)
                if found != expected:
                    raise FlowopsError(
                        f"models:/{self.name}/{mv.version}: its files do not match the digest recorded when it was "
                        f"imported ({expected[:12]}, now {found[:12]}); not serving it"
                    )
            model = mlflow.pyfunc.load_model(str(folder))
        except BaseException:
            shutil.rmtree(local, ignore_errors=True)
            raise
        adapter = plugins.image_adapter()
        meta = image_meta(model) if adapter is not None else None  # no template to decode images: JSON only
        method = ""
        if adapter is not None and meta is not None:  # an image model: warm up (graph tracing) before traffic
            method = meta.get("preprocess", adapter.default_method)
            model.predict(np.zeros((1, 32, 32, 3), dtype=np.uint8))
        return Loaded(
            model,
            str(mv.version),
            mv.run_id,
            mv.tags.get("flowops.git_commit", "unknown"),
            meta["class_names"] if meta else [],
            datetime.now(UTC).isoformat(timespec="seconds"),
            int(meta.get("image_size", 0)) if meta else 0,
            method,
            images=meta is not None,
            adapter=adapter,
        )

    def run(self, first) -> None:
        """Background thread: load `first`, then poll and swap until stopped; errors keep the old model."""
        target = first
        while True:
            try:
                if target is None:
                    target = self.client.get_model_version_by_alias(self.name, self.alias)
                if self.current is None or str(target.version) != self.current.version:
                    self.loading = str(target.version)
                    try:
                        loaded = self.load(target)  # fully loaded before anyone sees it
                    finally:
                        self.loading = None
                    previous = self.current
                    self.swaps += previous is not None
                    self.current = loaded
                    said = (
                        f"swapped to v{loaded.version} (was v{previous.version})"
                        if previous
                        else f"loaded v{loaded.version}"
                    )
                    print(
                        f"flowops serve: models:/{self.name}@{self.alias} {said}, run {loaded.run_id}",
                        file=sys.stderr,
                        flush=True,
                    )
                self.poll_error = None
            except Exception as exc:
                text = (getattr(exc, "message", None) or str(exc)).strip()
                line = text.splitlines()[0][:300] if text else type(exc).__name__
                when = datetime.now(UTC).isoformat(timespec="seconds")
                if line != self._logged:  # the whole of it in the service's log, once per change
                    print(f"flowops serve: models:/{self.name}@{self.alias}: {line}", file=sys.stderr, flush=True)
                    self._logged = line
                self.poll_error = f"{when}: {public_error(exc, line)}"
            target = None
            if self._stop.wait(self.poll_s):
                return

    def stop(self) -> None:
        self._stop.set()
