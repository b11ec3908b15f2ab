"""`python -m descry.cli`."""

from descry.cli import main

main()
