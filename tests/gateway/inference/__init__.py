"""Tests of gateway/services/inference/."""
