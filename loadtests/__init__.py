"""Load tests of the gateway and Triton with Locust (``make loadtest``, ``make soak``); see loadtests/README.md."""
