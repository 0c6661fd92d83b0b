"""The MLflow Model Registry run by policy: decide, the store with its audit trail, promote, history, report.

May import: `spec`, `gitops`, the shared modules and MLflow (inside functions). Never TensorFlow.
"""
