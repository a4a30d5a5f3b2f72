"""`python -m archc ...`: the same command line as the `archc` script."""

from archc.cli import main

main()
