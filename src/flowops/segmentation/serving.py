"""The segmentation template's image adapter for `flowops serve` (entry point `segmentation` of
`flowops.serving`): an upload decoded and shrunk exactly as the training cache decoded its images."""

from __future__ import annotations

from flowops.plugins import ImageAdapter
from flowops.segmentation.preprocess import PLAIN, decode_for, resize_mask

ADAPTER = ImageAdapter(decode=decode_for, resize_mask=resize_mask, default_method=PLAIN)
