"""Clients of the deepfake_detector Triton ensemble (gRPC/HTTP) and of the gateway."""
