"""The MLflow Model Registry: the store with its audit trail, holds, the promote queue's lock and
journal (`store`), fail-closed reads (`access`), and the holders handed to a PR job (`holders`).

May import: `spec`, `gitops`, the shared modules and MLflow (inside functions). Never TensorFlow.
"""
