from collections.abc import Callable, Sequence
from typing import Any

class Producer:
    _logger: Any
    def __init__(
        self,
        conf: dict[str, Any],
        wakeup_fd: int,
        on_batch: Callable[[list[Any]], None],
        on_failure: Callable[[Any, int, int, int, int], None],
        delivered: Callable[[int, int, int], Any],
    ) -> None: ...
    def produce(
        self, topic: str, batch: Any, results: list[Any], records: Sequence[tuple[Any, ...]]
    ) -> tuple[int, int, list[tuple[int, int]]]: ...
    def serve(self) -> None: ...
    def queue_length(self) -> int: ...
    def purge(self) -> None: ...
    def destroy(self) -> None: ...
