"""The files people write: flowops.yaml, experiment files (a template's schema or an MLproject's
parameters) and the registry policy, their models, loaders and validation.

May import: the small shared modules at the top of the package. Never MLflow or TensorFlow.
"""
