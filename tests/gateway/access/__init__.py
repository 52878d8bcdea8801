"""Tests of gateway/services/access/."""
