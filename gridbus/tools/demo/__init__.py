"""``gridbus demo``: the high-voltage new-installation flows, then the retail-market flows."""
