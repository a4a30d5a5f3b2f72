"""`python -m archc ...`: the same as the `archc` command."""

from archc.cli import main

main()
