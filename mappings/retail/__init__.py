"""Retail electricity market (flows 5-8): the review rules and the durable binding process,
decided on the store's state (``contracts.state``), and the outputs the routes' steps send."""

from __future__ import annotations

#: Store kind of accepted sales-company archives, keyed by credit code.
COMPANY = "sales-company"


def reason(code: str, field: str, message: str) -> dict[str, str]:
    """One review reason as fed back to the trading center: what, which field, in words."""
    return {"code": code, "field": field, "message": message}
