"""HTTP layer: routes, request/response schemas, dependencies."""

API_PREFIX = "/api/v1"  # every API route's prefix, set once (each API router is made with it)
