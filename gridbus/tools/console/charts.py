"""Small bar charts as inline SVG: no script, no image request, readable without colour.

Only numbers and the console's own labels go into the SVG; nothing a publisher wrote.
"""

from __future__ import annotations

from markupsafe import Markup, escape

from gridbus.tools.console.overview import HOUR_S, Series
from gridbus.tools.console.rendering import local_time

WIDTH, HEIGHT, PAD = 480, 110, 18


def bars(series: Series, title: str) -> Markup:
    """One bar per hour, the highest at full height; the axis says the peak and the time span."""
    counts = series.counts or [0]
    peak = max(counts) or 1
    slot = WIDTH / len(counts)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT + PAD}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}: {sum(counts):,} in {len(counts)} h</title>",
    ]
    for i, count in enumerate(counts):
        h = HEIGHT * count / peak
        parts.append(
            f'<rect x="{i * slot + 1:.1f}" y="{HEIGHT - h:.1f}" width="{max(slot - 2, 1):.1f}" height="{h:.1f}">'
            f"<title>{escape(local_time(series.start + i * HOUR_S))}: {count:,}</title></rect>"
        )
    parts.append(f'<text x="0" y="{HEIGHT + PAD - 4}">{escape(local_time(series.start)[:13])}h</text>')
    parts.append(f'<text x="{WIDTH}" y="{HEIGHT + PAD - 4}" text-anchor="end">peak {max(counts):,}/h</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
