"""The team's MLflow tracking server: start it checked (`flowops server`) and check it from a client (`doctor`).

May import: `spec` and the shared modules, MLflow inside functions. Never TensorFlow.
"""
