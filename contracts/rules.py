"""Business rules that are a province's or an operator's choice, not code.

Read once from the settings at start-up and handed to every mapping as ``MappingContext.rules``,
so a mapping stays a pure function of its message and context. The defaults are what the tests
and the demo run with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gridbus.contracts.categories import MarketEligibility


@dataclass(frozen=True)
class Rules:
    """market: which metering-point categories may join the retail market (``GRIDBUS_MARKET_CATEGORIES``)."""

    market: MarketEligibility = field(default_factory=MarketEligibility)


#: The rules when nothing is configured.
DEFAULT_RULES = Rules()
