from collections.abc import Sequence
from typing import Any

from msgspec import Raw

from gateway.kafka.delivery import Prepared

JSON_NULL: Raw
MAX_TIMESTAMP_MS: int

def timestamp_ms(value: int | str) -> int: ...
def prepare(
    items: list[Any],
    formats: Any,
    max_record_bytes: int,
    extra_headers: list[tuple[str, bytes]] | None = None,
    where: str | None = None,
) -> list[Prepared]: ...
def total_size(records: Sequence[Prepared]) -> int: ...
def beyond(records: Sequence[Prepared], partitions: int) -> list[int]: ...
