"""Put first on PYTHONPATH, this makes every Python process of a test run as if the segmentation
template were not installed (#34): `flowops.segmentation` cannot be imported (nor the old-path shims
that lead to it, `flowops.pyfunc` and `flowops.train`), and its entry points are not listed."""

from __future__ import annotations

import importlib.abc
import importlib.metadata
import sys

TEMPLATE = "flowops.segmentation"
SHIMS = ("flowops.pyfunc", "flowops.train")


class _Uninstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == TEMPLATE or name.startswith(TEMPLATE + ".") or name in SHIMS:
            raise ModuleNotFoundError(f"No module named {name!r} (the segmentation template is masked)", name=name)
        return None


sys.meta_path.insert(0, _Uninstalled())
_entry_points = importlib.metadata.entry_points


def _without_template(**params):
    found = _entry_points(**params)
    if isinstance(found, importlib.metadata.EntryPoints):
        return importlib.metadata.EntryPoints(e for e in found if not e.value.startswith(TEMPLATE))
    return found


importlib.metadata.entry_points = _without_template
