"""Delivery: the alert-event outbox and how it leaves Lookout (SSE stream, signed webhooks)."""
