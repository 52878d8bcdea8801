"""``python -m loadtests``: see loadtests/runner.py."""

from loadtests.runner import main

main()
