"""Metrics (Prometheus), health endpoints and structured logs."""
