"""Every route gridbus runs. The runtime derives topology and processing from ``ROUTES``."""

from __future__ import annotations

from gridbus.routes import hv_install, master_data, meter_readings, retail_market
from gridbus.routes.model import Route

ROUTES: tuple[Route, ...] = (*hv_install.ROUTES, *retail_market.ROUTES, *master_data.ROUTES, *meter_readings.ROUTES)


def route_by_name(name: str) -> Route:
    """The route called ``name``; ``KeyError`` naming the known routes otherwise."""
    for route in ROUTES:
        if route.name == name:
            return route
    raise KeyError(f"no route named {name!r}; known: {', '.join(r.name for r in ROUTES)}")
