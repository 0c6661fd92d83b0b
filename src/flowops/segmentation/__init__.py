"""The segmentation template's plug-ins to the engine (the engine never imports this package).

Its trainer is flowops' own (`flowops.training`, `flowops.data`, `flowops.pyfunc`); this package
holds what the generic engine calls through entry points: the report's prediction grid.
"""
