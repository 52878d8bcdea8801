"""Shared model code and constants of the deepfake detector (export, Triton Python models, gateway)."""
