"""The segmentation model's pyfunc at its old path, for models logged before #34.

A model logged then pickled `flowops.pyfunc.SegmentationModel` (its `python_model.pkl` names this
module); the class lives in `flowops.segmentation.pyfunc` now, and this module hands out that same
class, so an old model unpickles to it (tests/integration/test_model.py loads one).
"""

from __future__ import annotations

from flowops.segmentation.pyfunc import META_FILE, SegmentationModel, predict_masks

__all__ = ["META_FILE", "SegmentationModel", "predict_masks"]
