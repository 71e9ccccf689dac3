"""Canonical, system-neutral events in the IEC 61968-100 envelope."""

from gridbus.contracts.canonical.envelope import VERBS, CanonicalEvent, payload_namespace
from gridbus.contracts.canonical.payload import BuiltPayload, PayloadBuilder

__all__ = ["VERBS", "BuiltPayload", "CanonicalEvent", "PayloadBuilder", "payload_namespace"]
