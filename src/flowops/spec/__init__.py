"""The files people write: experiment specs and the registry policy, their models, loaders and validation.

May import: the small shared modules at the top of the package. Never MLflow or TensorFlow.
"""
