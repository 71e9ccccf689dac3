"""What RabbitMQ does with a retry copy, done by the worker on kombu's in-memory broker
(``memory://``, the demo's and the unit layer's broker), which has no message TTL and no
dead-lettering: a copy in a route's delay queue goes back through the retry exchange once
its due time (header ``x-gridbus-due-at``, epoch seconds) has come."""

from __future__ import annotations

import heapq
import time
from typing import Callable, Iterable

from kombu import Queue

from gridbus.contracts import naming
from gridbus.routes.model import Route
from gridbus.workers import headers as H
from gridbus.workers.amqp.publisher import Publisher


class DelayEmulation:
    """The routes' delay queues on ``memory://``: ``move_due`` takes every copy out of them and
    republishes those that are due, keeping the others until a later turn.

    ``publisher`` returns the worker's current publisher (it changes with each connection).
    """

    def __init__(self, routes: Iterable[Route], publisher: Callable[[], Publisher]):
        self.routes = list(routes)
        self.publisher = publisher
        self._waiting: list[tuple[float, int, tuple[Route, object]]] = []  # (due, arrival, (route, message))
        self._arrivals = 0

    def move_due(self, channel) -> None:
        """Called once per loop turn of a worker on ``memory://``."""
        for route in self.routes:
            for delay in route.retry.delay_tiers:
                queue = Queue(route.delay_queue(delay), no_declare=True)(channel)
                while (message := queue.get(no_ack=True)) is not None:
                    due = float((message.headers or {}).get(H.DUE_AT, 0))
                    self._arrivals += 1
                    heapq.heappush(self._waiting, (due, self._arrivals, (route, message)))
        now = time.time()
        while self._waiting and self._waiting[0][0] <= now:
            _, _, (route, message) = heapq.heappop(self._waiting)
            body = message.body if isinstance(message.body, bytes) else message.body.encode()
            publisher = self.publisher()
            publisher.publish(
                exchange=naming.RETRY_EXCHANGE,
                routing_key=route.name,
                body=body,
                properties={k: v for k, v in message.properties.items() if k != "application_headers"},
                headers=message.headers,
            )
            publisher.wait()
