"""The SQS side: poll, pool, heartbeat, settle, shutdown."""
