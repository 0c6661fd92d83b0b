"""Data: COCO-format loading, semantic masks, the decoded cache, the synthetic generator."""
