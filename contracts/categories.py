"""Electricity-use categories of metering points (用电类别): the one code table.

Contracts accept exactly these codes, mappings and canonical events translate them from here,
and whether a category may join the retail market is a rule of the province (configuration:
``GRIDBUS_MARKET_CATEGORIES``, see ``MarketEligibility``), not a property of the code.

The codes are gridbus's (marketing systems name the categories, their numeric codes differ by
province). The 2023 tariff reform (发改价格〔2023〕526号) groups tariffs as 居民, 农业 and 工商业:
``tariff_group`` says where each category falls. ``commercial_industrial`` (工商业) is the
category as marketing writes it for points set up after the reform; the older 大工业 and
一般工商业 (with its former parts 商业 and 非居民照明) are still found on existing points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal


@dataclass(frozen=True)
class MeteringCategory:
    """One category: gridbus's code (events carry it as data), its Chinese name, and its 2023 tariff group (``residential``, ``agricultural``, ``commercial_industrial``, or
    ``wholesale`` for 趸售, which is priced on its own)."""

    code: str
    name_zh: str
    tariff_group: str


CATEGORIES: tuple[MeteringCategory, ...] = (
    MeteringCategory("large_industrial", "大工业", "commercial_industrial"),
    MeteringCategory("general_commercial_industrial", "一般工商业", "commercial_industrial"),
    MeteringCategory("commercial_industrial", "工商业", "commercial_industrial"),
    MeteringCategory("commercial", "商业", "commercial_industrial"),
    MeteringCategory("non_residential_lighting", "非居民照明", "commercial_industrial"),
    MeteringCategory("residential", "居民生活", "residential"),
    MeteringCategory("agricultural", "农业生产", "agricultural"),
    MeteringCategory("wholesale", "趸售", "wholesale"),
)

BY_CODE: dict[str, MeteringCategory] = {c.code: c for c in CATEGORIES}

#: The codes, in the table's order.
CODES: tuple[str, ...] = tuple(BY_CODE)

#: A contract field holding a category code: anything else is refused with the codes listed.
CategoryCode = Literal[
    "large_industrial", "general_commercial_industrial", "commercial_industrial", "commercial",
    "non_residential_lighting", "residential", "agricultural", "wholesale",
]

#: Market-eligible by default: the categories seed 000 converts (大工业, 一般工商业) and 工商业,
#: which the 2023 reform made of them.
DEFAULT_MARKET_CATEGORIES = frozenset({"large_industrial", "general_commercial_industrial", "commercial_industrial"})


def category(code: str) -> MeteringCategory:
    """The category of ``code``; ``KeyError`` naming the known codes otherwise."""
    try:
        return BY_CODE[code]
    except KeyError:
        raise KeyError(f"unknown metering category {code!r}; known: {', '.join(CODES)}") from None


@dataclass(frozen=True)
class MarketEligibility:
    """Which categories' metering points become market retail metering points (市场化零售计量点)
    when their customer joins the retail market: a provincial rule, set by configuration."""

    codes: frozenset[str] = DEFAULT_MARKET_CATEGORIES

    def __post_init__(self) -> None:
        unknown = sorted(set(self.codes) - set(CODES))
        if unknown:
            raise ValueError(f"unknown metering categories {', '.join(unknown)}; known: {', '.join(CODES)}")

    @classmethod
    def of(cls, codes: Iterable[str]) -> MarketEligibility:
        return cls(frozenset(codes))

    def eligible(self, code: str) -> bool:
        return code in self.codes
