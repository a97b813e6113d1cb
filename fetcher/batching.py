"""One thread that passes on, as one list, whatever was posted while its last send ran."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Batcher(Generic[Item]):
    """`post` never blocks; a thread calls `send` with everything posted since its last call.

    An idle batcher sends each item at once; a busy one pays one send (a pipe write, a
    commit) and its reader one wake-up per batch rather than per item. `close` sends what
    is left, then stops. Used for the index's group commits.
    """

    def __init__(
        self, send: Callable[[list[Item]], None], *, name: str, limit: int | None = None
    ) -> None:
        self.send, self.limit = send, limit
        self.items: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def post(self, item: Item) -> None:
        self.items.put(item)

    def close(self) -> None:
        self.items.put(None)
        self.thread.join()

    def _run(self) -> None:
        closing = False
        while not closing:
            batch, closing = self._gather()
            if batch:
                self.send(batch)

    def _gather(self) -> tuple[list[Item], bool]:
        """What has arrived (waiting for the first item), up to `limit`; True once closed."""
        item = self.items.get()
        batch: list[Item] = []
        while item is not None:
            batch.append(item)
            if self.limit is not None and len(batch) >= self.limit:
                break
            try:
                item = self.items.get_nowait()
            except queue.Empty:
                break
        return batch, item is None
