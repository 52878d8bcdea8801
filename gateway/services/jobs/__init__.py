"""Asynchronous prediction jobs: a durable queue and store (SQLite by default, Redis for several replicas),
the workers that run the pipeline for them, callbacks and the retention of old results."""
