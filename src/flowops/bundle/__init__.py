"""Run bundles: a training run as files, carried from the untrusted PR stage to the trusted import.

May import: `spec`, `gitops`, `registry`, the shared modules and MLflow (inside functions).
"""
