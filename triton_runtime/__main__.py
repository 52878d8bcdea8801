"""`python -m triton_runtime`: start the local Triton server in the foreground."""

from triton_runtime.server import main

main()
