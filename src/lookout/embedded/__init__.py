"""The local embedded stack: PostgreSQL and a Kafka-compatible broker for dev and tests."""
