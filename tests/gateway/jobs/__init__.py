"""Tests of gateway/services/jobs/."""
