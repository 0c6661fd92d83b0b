"""`flowops serve`: follow a registry alias and answer predictions over HTTP.

May import: the shared modules, MLflow and the logged model (`flowops.segmentation.pyfunc`).
"""
