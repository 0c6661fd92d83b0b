"""Git as the record: commits and ranges, the experiment files a change touches, code trees, run lineage.

May import: `spec` and the shared modules. Never MLflow or TensorFlow.
"""
