"""A simulated node's durable store: group commit after an fsync delay, and what a crash keeps.

It mirrors ``sync.store.GroupCommitStore`` as the engine sees it: every change is submitted; a
commit takes everything submitted since the last one and is durable ``fsync_s`` later; changes
submitted while a commit is under way go into the next one. When a commit is done the node calls
``engine.durable_through`` (which releases acks). A crash that keeps the disk keeps committed
changes and loses the rest; a crash that loses the disk loses everything; a clean stop commits
what is pending first.
"""

from __future__ import annotations

from collections.abc import Callable

from meridian.sim.clock import Scheduler

Entry = tuple[int, str, bytes]  # (change number of the current engine, document id, update)


class VirtualDisk:
    """Committed updates in commit order, per node, surviving the node's process."""

    def __init__(
        self, scheduler: Scheduler, fsync_s: float, on_durable: Callable[[int], None]
    ) -> None:
        self.scheduler = scheduler
        self.fsync_s = fsync_s
        self.on_durable = on_durable
        self.committed: list[tuple[str, bytes]] = []
        self.hlc_last: str | None = None  # the HLC stamp a clean stop persists (node.server)
        self._pending: list[Entry] = []
        self._committing: list[Entry] = []
        self._generation = 0  # a crash orphans the commit under way

    def submit(self, event_no: int, doc_id: str, update: bytes) -> None:
        self._pending.append((event_no, doc_id, update))
        if not self._committing:
            self._start_commit()

    def documents(self) -> dict[str, list[bytes]]:
        """What a restarting node loads: each document's committed updates, in order."""
        loaded: dict[str, list[bytes]] = {}
        for doc_id, update in self.committed:
            loaded.setdefault(doc_id, []).append(update)
        return loaded

    def crash(self, *, keep: bool) -> None:
        self._generation += 1
        self._pending = []
        self._committing = []
        if not keep:
            self.committed = []
            self.hlc_last = None

    def flush(self) -> None:
        """A clean stop: whatever was submitted is committed before the process exits."""
        batch = self._committing + self._pending
        self._generation += 1
        self._committing, self._pending = [], []
        self._commit(batch)

    def _start_commit(self) -> None:
        self._committing, self._pending = self._pending, []
        self.scheduler.after(self.fsync_s, self._finish, self._generation)

    def _finish(self, generation: int) -> None:
        if generation != self._generation:
            return
        batch, self._committing = self._committing, []
        self._commit(batch)
        if self._pending:
            self._start_commit()

    def _commit(self, batch: list[Entry]) -> None:
        if not batch:
            return
        self.committed.extend((doc_id, update) for _, doc_id, update in batch)
        self.on_durable(max(event_no for event_no, _, _ in batch))
