"""Canonical, system-neutral events in the IEC 61968-100 envelope."""

from contracts.canonical.envelope import VERBS, CanonicalEvent, payload_namespace

__all__ = ["VERBS", "CanonicalEvent", "payload_namespace"]
