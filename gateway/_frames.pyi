# Types of the compiled SSE encoder (gateway/_frames.pyx).
from collections.abc import Callable

from confluent_kafka import KafkaError, Message

def encode(
    topic: str,
    topic_json: bytes,
    seed: int,
    positions: dict[int, int],
    msgs: list[Message],
    owned: set[int] | None,
    key_fmt: int,
    value_fmt: int,
    valid: Callable[[bytes], object],
    enc: Callable[[str], bytes],
    match: Callable[[Message], bool] | None,
    on_error: Callable[[KafkaError], None],
    slow: Callable[[Message, bytes], bytes],
) -> tuple[bytes, int]: ...
