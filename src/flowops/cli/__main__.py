"""`python -m flowops.cli` runs the command line, as the `flowops` console script does."""

from flowops.cli.main import main

main()
