"""Hand-written fakes with the real adapter interface."""

from __future__ import annotations

import threading

from gridbus.contracts.errors import PermanentDeliveryError, TransientDeliveryError


class RecordingAdapter:
    """A synchronous target that records each delivery; faults are queued by the test."""

    name = "rec"

    def __init__(self):
        self.calls: list[tuple[str, str, object]] = []  # (operation, outbound message id, output)
        self._faults: list[str] = []
        self._lock = threading.Lock()

    def fail_next(self, n: int, kind: str = "transient") -> None:
        with self._lock:
            self._faults += [kind] * n

    def deliver(self, operation, output, context) -> None:
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault == "transient":
            raise TransientDeliveryError(f"rec {operation}: injected outage (message {context.message_id})")
        if fault == "permanent":
            raise PermanentDeliveryError(f"rec {operation}: injected refusal (message {context.message_id})")
        with self._lock:
            self.calls.append((operation, context.message_id, output))

    def effects(self) -> set[str]:
        return {mid for _, mid, _ in self.calls}

    def close(self) -> None:
        pass
