"""Tests of gateway/services/storage/."""
