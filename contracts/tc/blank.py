"""What the trading center's optional elements mean when they are sent empty."""

from __future__ import annotations


def blank_to_none(text: str | None) -> str | None:
    """An optional element absent, empty or whitespace-only is "not given" (None); otherwise its
    text without surrounding whitespace (which the XSD's decimal and date types ignore as well)."""
    if text is None:
        return None
    text = text.strip()
    return text or None
