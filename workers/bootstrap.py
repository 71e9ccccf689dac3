"""The one place where the runtime's parts are put together from settings."""

from __future__ import annotations

import importlib
import os
import socket
from pathlib import Path
from typing import Callable, Collection, Iterable, Mapping

from gridbus.adapters.amqp import build_amqp_adapters
from gridbus.workers.alerts import DeadLetterAlerts
from gridbus.contracts.soap import soap_peer_wsdls
from gridbus.routes.model import Route
from gridbus.workers.breaker import CircuitBreaker, GuardedAdapter
from gridbus.workers.amqp import Publisher
from gridbus.workers.lanes import Lanes, plan_lanes
from gridbus.workers.runtime import Worker, china_now
from gridbus.workers.settings import Settings
from gridbus.workers.store import Store


def load_routes(spec: str | None = None, names: Iterable[str] = ()) -> tuple[Route, ...]:
    """Routes from ``module:ATTRIBUTE`` (default ``gridbus.routes:ROUTES``), optionally only those named."""
    module_name, _, attribute = (spec or "gridbus.routes:ROUTES").partition(":")
    routes = tuple(getattr(importlib.import_module(module_name), attribute or "ROUTES"))
    names = list(names)
    if not names:
        return routes
    known = {r.name: r for r in routes}
    missing = [n for n in names if n not in known]
    if missing:
        raise KeyError(f"no route named {', '.join(missing)}; known: {', '.join(known)}")
    return tuple(known[n] for n in names)


def adapter_factory(
    settings: Settings, extra: dict | None = None, breakers: dict[str, CircuitBreaker] | None = None
) -> Callable[[Callable[[], Publisher]], dict]:
    """Adapters by name: AMQP targets on the worker's publisher, SOAP peers from settings; each
    synchronous adapter named in ``breakers`` behind its breaker. New adapters on every call: a
    lane's adapters (HTTP sessions) are its own, its peers' breakers shared."""
    from gridbus.adapters.soap import build_soap_adapters

    def build(publisher: Callable[[], Publisher]) -> dict:
        adapters = {**build_amqp_adapters(publisher), **build_soap_adapters(settings)}
        adapters.update(extra or {})
        for name, breaker in (breakers or {}).items():
            if name in adapters:
                adapters[name] = GuardedAdapter(adapters[name], breaker)
        return adapters

    return build


def synchronous_adapters(settings: Settings, extra: dict | None = None) -> tuple[str, ...]:
    """Names of the adapters that deliver inside the worker's loop (no batched ``send``)."""
    adapters = adapter_factory(settings, extra)(lambda: None)  # built, never used: nothing connects
    return tuple(name for name, adapter in adapters.items() if not hasattr(adapter, "send"))


def check_soap_targets(routes: Iterable[Route], adapters: Collection[str], wsdls: Mapping[str, Path]) -> None:
    """A step whose target is a SOAP peer (it has a WSDL in ``wsdls``) that has no adapter, because
    GRIDBUS_SOAP_PEERS gives it no URL, stops the start-up, rather than dead-lettering every message."""
    for route in routes:
        for step in route.steps:
            peer = step.target.adapter
            if peer in wsdls and peer not in adapters:
                raise ValueError(
                    f"route {route.name}, step {step.name}: SOAP peer {peer!r} (contracts/{peer}/{wsdls[peer].name}) "
                    f"has no endpoint URL: add {peer}=http://... to GRIDBUS_SOAP_PEERS"
                )


def build_breakers(settings: Settings, peers: Iterable[str]) -> dict[str, CircuitBreaker]:
    return {
        peer: CircuitBreaker(peer, failures=settings.breaker_failures, cooldown_s=settings.breaker_cooldown_s)
        for peer in peers
    }


def build_worker(settings: Settings, routes: Iterable[Route], *, store: Store | None = None, **kwargs) -> Worker:
    """One Worker for all the given routes (one loop), its synchronous peers behind breakers."""
    routes = tuple(routes)
    extra = kwargs.pop("extra_adapters", None)
    check_soap_targets(routes, adapter_factory(settings, extra)(lambda: None), soap_peer_wsdls())
    breakers = kwargs.pop("breakers", None)
    if breakers is None:
        breakers = build_breakers(settings, synchronous_adapters(settings, extra))
    worker = Worker(
        routes,
        broker_url=settings.broker_url,
        store=store or Store(settings.store_url),
        adapters=adapter_factory(settings, extra, breakers),
        prefetch=settings.prefetch,
        batch_size=settings.batch_size,
        batch_linger_s=settings.batch_linger_ms / 1000,
        confirm_timeout_s=settings.confirm_timeout_s,
        message_deadline_s=settings.message_deadline_s,
        retention_s=settings.store_retention_days * 86400,
        heartbeat_s=settings.heartbeat_s,
        amqp_fast_path=settings.amqp_fast_path,
        name=kwargs.pop("name", settings.worker_name),
        source_users=settings.source_user_names(),
        rules=settings.rules(),
        options=settings.mapping_options(),
        metrics=settings.metrics_port is not None,
        **kwargs,
    )
    for adapter in worker.adapters.values():
        if isinstance(adapter, GuardedAdapter):
            adapter.on_return = worker.progressed  # a call that ended is progress for the watchdog
    return worker


def build_alerts(settings: Settings) -> DeadLetterAlerts | None:
    """The dead-letter webhook of the process (one for every lane), or None when none is set."""
    if settings.alert_webhook_url is None:
        return None
    return DeadLetterAlerts(
        settings.alert_webhook_url, interval_s=settings.alert_interval_min * 60,
        source=f"gridbus {settings.worker_name}@{socket.gethostname()} pid {os.getpid()}", clock=china_now,
    )


def build_lanes(settings: Settings, routes: Iterable[Route], *, store: Store | None = None, **kwargs) -> Lanes:
    """The worker process: one lane per set of synchronous peers the routes call (see
    ``workers.lanes``), or a single lane with ``settings.lanes`` off. The lanes share one
    breaker per peer; on SQLite they share one store connection (its lock serialises them, and
    two writers on one file would refuse each other's transactions), on PostgreSQL each lane has
    its own."""
    routes = tuple(routes)
    extra = kwargs.get("extra_adapters")
    synchronous = synchronous_adapters(settings, extra)
    breakers = build_breakers(settings, synchronous)
    lanes = plan_lanes(routes, synchronous, split=settings.lanes)
    for lane in lanes:
        if lane.peers and settings.message_deadline_s <= settings.soap_timeout_s:
            raise ValueError(
                f"lane {lane.name} calls {', '.join(lane.peers)}, and one call may take GRIDBUS_SOAP_TIMEOUT_S "
                f"({settings.soap_timeout_s:g} s): GRIDBUS_MESSAGE_DEADLINE_S ({settings.message_deadline_s:g} s) "
                "must be longer, or the watchdog takes a slow call for a hang"
            )
    shared = store
    if shared is None and not settings.store_url.startswith(("postgresql://", "postgres://")):
        shared = Store(settings.store_url)
    copies = settings.lane_consumers

    def name(lane, copy: int) -> str:  # in each connection's name: operators tell the lanes apart in list_connections
        base = settings.worker_name if len(lanes) == 1 else f"{settings.worker_name}/{lane.name}"
        return base if copies == 1 else f"{base}#{copy}"

    kwargs.setdefault("alerts", build_alerts(settings))
    workers = {
        (lane.name if copies == 1 else f"{lane.name}#{copy}"): build_worker(
            settings, lane.routes, store=shared, breakers=breakers, name=name(lane, copy), **kwargs
        )
        for lane in lanes
        for copy in range(1, copies + 1)
    }
    return Lanes(workers)
