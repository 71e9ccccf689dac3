"""Daily frozen meter readings (flow 9): quality rules, the per-part decision and the outputs.

``rules`` judges one record against the last accepted reading of its metering point and what the
master data holds of it; ``decision`` applies the rules to a whole part on one read of the state;
``outputs`` builds what marketing, the trading center, the collection system and the events get.
"""
