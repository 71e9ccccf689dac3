"""Contracts of meter data collection (``mdc``, 用电信息采集系统)."""

from gridbus.contracts.mdc.daily_frozen import DailyFrozenPublished, FrozenReading

__all__ = ["DailyFrozenPublished", "FrozenReading"]
