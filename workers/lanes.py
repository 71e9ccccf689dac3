"""Lanes: the routes of one worker process, grouped by the synchronous peers their steps call.

A synchronous peer (a SOAP service: the command center ``cmd``, the trading center ``tc``) is
called inside the worker's loop, one message after another. One loop for every route lets a peer
that is slow, or hangs until the call's timeout, hold the messages of every other route too. So
the routes are split: a lane is the set of routes that call the same synchronous peers
(``cmd``, ``tc``, ``cmd+tc``; ``amqp`` for those that only publish), and each lane is a
``Worker`` of its own in a thread of its own, with its own consuming and publishing connections,
its own batches and its own watchdog. A lane waits only for its own peers. The per-message code
is the Worker's as before: each message is still acked only after its outcome is recorded.

Why lanes rather than a pool of calls per peer: a batch is settled as a whole (one confirm wait,
one commit, one multiple-ack), so a batch whose calls ran in a pool would still wait for its
slowest call. And why threads rather than processes: the calls wait on sockets (the GIL is free
meanwhile), the lanes share the process's store connection on SQLite, and one supervisor entry
still runs one process. A lane that ends with an error stops the others, and the process exits.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from typing import Iterable

import structlog

from gridbus.routes.model import Route
from gridbus.workers.logging import get_logger
from gridbus.workers.runtime import Worker

log = get_logger("gridbus.lanes")

#: The lane of routes that call no synchronous peer.
AMQP_LANE = "amqp"


@dataclass(frozen=True)
class Lane:
    name: str
    peers: tuple[str, ...]  # the synchronous adapters its routes' steps call
    routes: tuple[Route, ...]


def plan_lanes(routes: Iterable[Route], synchronous: Iterable[str], *, split: bool = True) -> list[Lane]:
    """One lane per set of synchronous adapters called, in the order the routes first name them;
    with ``split`` off, one lane ``all`` for every route."""
    routes, synchronous = tuple(routes), set(synchronous)
    groups: dict[tuple[str, ...], list[Route]] = {}
    for route in routes:
        peers = tuple(sorted({s.target.adapter for s in route.steps if s.target.adapter in synchronous}))
        groups.setdefault(peers, []).append(route)
    if not split and groups:
        peers = tuple(sorted({p for key in groups for p in key}))
        return [Lane("all", peers, routes)]
    return [Lane("+".join(peers) or AMQP_LANE, peers, tuple(rs)) for peers, rs in groups.items()]


class Lanes:
    """Runs one ``Worker`` per lane, each in a thread of its own, until ``stop()`` or SIGTERM."""

    def __init__(self, workers: dict[str, Worker]):
        if not workers:
            raise ValueError("no lanes: give at least one route")
        self.workers = workers
        self._stop = threading.Event()

    @property
    def counts(self) -> dict[str, int]:
        """Outcomes so far, over every lane."""
        total: dict[str, int] = {}
        for worker in self.workers.values():
            for outcome, n in list(worker.counts.items()):
                total[outcome] = total.get(outcome, 0) + n
        return total

    def stop(self, *_args) -> None:
        """Each lane finishes its batch in hand, then ``run`` returns (also the SIGTERM handler)."""
        self._stop.set()
        for worker in self.workers.values():
            worker.stop()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def start_watchdog(self) -> None:
        """A watchdog per lane, each on its own lane's batches and deadline."""
        for worker in self.workers.values():
            worker.start_watchdog()

    def run(self, **kwargs) -> None:
        """Run every lane until stopped; if one lane ends with an error, stop the others and raise it."""
        failures: list[tuple[str, BaseException]] = []

        def serve(name: str, worker: Worker) -> None:
            structlog.contextvars.bind_contextvars(lane=name)  # on every log line of this thread
            try:
                worker.run(**kwargs)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                failures.append((name, exc))
                log.error("lane.failed", routes=[r.name for r in worker.routes], exc_info=True)
            finally:
                self._stop.set()  # one lane ending (error or ``until``) ends them all

        threads = [
            threading.Thread(target=serve, args=(name, worker), name=f"gridbus-lane-{name}", daemon=True)
            for name, worker in self.workers.items()
        ]
        for thread in threads:
            thread.start()
        log.info("lanes.started", lanes={name: [r.name for r in w.routes] for name, w in self.workers.items()})
        while not self._stop.wait(0.5):  # a timed wait, so signals reach their handlers at once
            pass
        self.stop()
        for thread in threads:
            thread.join()
        if failures:
            name, exc = failures[0]
            raise RuntimeError(f"lane {name} ended with {type(exc).__name__}: {exc}") from exc
