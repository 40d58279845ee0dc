"""Kafka HTTP gateway: REST and SSE access to Apache Kafka for clients that do not speak Kafka."""

__version__ = "0.1.0"
