"""Tests of gateway/services/intake/."""
