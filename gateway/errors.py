"""Domain errors: what can go wrong, said without HTTP.

The HTTP layer (``gateway.api.errors``) owns the one table that turns each of these into a status and
an ``error_code``; nothing below the routers knows about status codes.

    GatewayError
    ├── BadRequest              malformed JSON, bad query parameter, bad cursor
    ├── Unauthenticated         missing or invalid credentials
    ├── Forbidden               principal may not do this
    │   └── KafkaDenied             Kafka's ACLs refuse the gateway's own user (no retry helps)
    ├── NotFound
    │   ├── TopicNotFound
    │   ├── PartitionNotFound
    │   ├── ConsumerInstanceNotFound
    │   └── ConsumerGroupNotFound
    ├── Conflict                topic or consumer instance already exists
    │   ├── ConsumerInstanceExists  (Confluent v2: 40902)
    │   └── ConsumerStateConflict   subscription and manual assignment mixed (Confluent v2: 40903)
    ├── NotAcceptable           no response type the client accepts (Confluent v2: 40601)
    ├── PayloadTooLarge         body, record or batch over a limit
    ├── UnsupportedMediaType
    ├── InvalidRecord           well-formed JSON that breaks the schema
    │   └── InvalidConsumerConfig   (Confluent v2: 42204)
    ├── Backpressure            producer queue full, quota, too many streams (retry later)
    └── Unavailable             Kafka unreachable, delivery timed out, gateway draining (retry later)
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway reports to a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(GatewayError):
    pass


class Unauthenticated(GatewayError):
    pass


class Forbidden(GatewayError):
    pass


class KafkaDenied(Forbidden):
    """Kafka's ACLs refuse the gateway's own Kafka user ``action`` (read, write) on a topic or a group."""

    def __init__(self, action: str, topic: str | None, reason: str, *, group: str | None = None) -> None:
        if group is not None:
            where, kind = f"group '{group}'", "group"
        else:
            where, kind = (f"topic '{topic}'" if topic else "this topic"), "topic"
        super().__init__(
            f"Kafka refused the gateway's own user to {action} {where} ({reason}); "
            f"an operator must grant it {action.capitalize()} on the {kind}."
        )


class NotFound(GatewayError):
    pass


class TopicNotFound(NotFound):
    def __init__(self, topic: str) -> None:
        super().__init__(f"Topic '{topic}' not found.")
        self.topic = topic


class TopicDeleted(TopicNotFound):
    """A stream's topic was deleted while it was open (the stream ends with this as ``event: error``)."""

    def __init__(self, topic: str) -> None:
        super().__init__(topic)
        self.message = f"Topic '{topic}' was deleted; the stream ends."


class PartitionNotFound(NotFound):
    def __init__(self, topic: str, partition: int) -> None:
        super().__init__(f"Partition {partition} of topic '{topic}' not found.")
        self.topic = topic
        self.partition = partition


class ConsumerInstanceNotFound(NotFound):
    pass


class ConsumerGroupNotFound(NotFound):
    pass


class Conflict(GatewayError):
    pass


class ConsumerInstanceExists(Conflict):
    pass


class ConsumerStateConflict(Conflict):
    pass


class NotAcceptable(GatewayError):
    pass


class PayloadTooLarge(GatewayError):
    pass


class UnsupportedMediaType(GatewayError):
    pass


class InvalidRecord(GatewayError):
    pass


class InvalidConsumerConfig(InvalidRecord):
    pass


class RetryLater(GatewayError):
    """An error the client should retry after ``retry_after_s`` seconds."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Backpressure(RetryLater):
    pass


class Unavailable(RetryLater):
    pass
