"""Tests of the FastAPI gateway."""
