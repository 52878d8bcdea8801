"""Tests of gateway/services/overlay/."""
