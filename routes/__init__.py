"""Every route gridbus runs. The runtime derives topology and processing from ``ROUTES``.

``ROUTES`` is assembled on first use, so the building blocks of this package (``routes.model``,
``routes.state``, ``routes.naming``) can be imported by the mappings that routes are made of.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from routes.model import Route

    ROUTES: tuple[Route, ...]


def _all_routes() -> tuple["Route", ...]:
    from routes import hv_install, retail_market

    return (*hv_install.ROUTES, *retail_market.ROUTES)


def __getattr__(name: str):
    if name == "ROUTES":
        routes = _all_routes()
        globals()["ROUTES"] = routes
        return routes
    raise AttributeError(f"module 'routes' has no attribute {name!r}")


def route_by_name(name: str) -> "Route":
    """The route called ``name``; ``KeyError`` naming the known routes otherwise."""
    from routes import ROUTES

    for route in ROUTES:
        if route.name == name:
            return route
    raise KeyError(f"no route named {name!r}; known: {', '.join(r.name for r in ROUTES)}")
