"""Tests of the load-test tooling (loadtests/)."""
