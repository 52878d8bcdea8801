"""Settings and the error hierarchy."""
