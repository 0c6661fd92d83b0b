"""`flowops serve`: follow a registry alias and answer predictions over HTTP.

May import: `registry`, the shared modules and MLflow; a template's image models through its
image adapter (flowops.plugins), never by import.
"""
