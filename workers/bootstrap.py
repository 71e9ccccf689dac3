"""The one place where the runtime's parts are put together from settings."""

from __future__ import annotations

import importlib
from typing import Callable, Iterable

from adapters.amqp import build_amqp_adapters
from routes.model import Route
from workers.broker import Publisher
from workers.runtime import Worker
from workers.settings import Settings
from workers.store import Store


def load_routes(spec: str | None = None, names: Iterable[str] = ()) -> tuple[Route, ...]:
    """Routes from ``module:ATTRIBUTE`` (default ``routes:ROUTES``), optionally only those named."""
    module_name, _, attribute = (spec or "routes:ROUTES").partition(":")
    routes = tuple(getattr(importlib.import_module(module_name), attribute or "ROUTES"))
    names = list(names)
    if not names:
        return routes
    known = {r.name: r for r in routes}
    missing = [n for n in names if n not in known]
    if missing:
        raise KeyError(f"no route named {', '.join(missing)}; known: {', '.join(known)}")
    return tuple(known[n] for n in names)


def adapter_factory(settings: Settings, extra: dict | None = None) -> Callable[[Callable[[], Publisher]], dict]:
    """Adapters by name: AMQP targets on the worker's publisher, SOAP peers from settings."""
    from adapters.soap import build_soap_adapters

    def build(publisher: Callable[[], Publisher]) -> dict:
        adapters = {**build_amqp_adapters(publisher), **build_soap_adapters(settings)}
        adapters.update(extra or {})
        return adapters

    return build


def build_worker(settings: Settings, routes: Iterable[Route], *, store: Store | None = None, **kwargs) -> Worker:
    return Worker(
        routes,
        broker_url=settings.broker_url,
        store=store or Store(settings.store_url),
        adapters=adapter_factory(settings, kwargs.pop("extra_adapters", None)),
        prefetch=settings.prefetch,
        batch_size=settings.batch_size,
        batch_linger_s=settings.batch_linger_ms / 1000,
        confirm_timeout_s=settings.confirm_timeout_s,
        message_deadline_s=settings.message_deadline_s,
        retention_s=settings.store_retention_days * 86400,
        **kwargs,
    )
