"""The archive's and the journal's retention, enforced by the process that runs the ingester
(every worker, unless GRIDBUS_ARCHIVE_INGEST=false; then ``gridbus dlq ingest``).

Every ``interval_s`` (and at start): letters dead-lettered more than the archive retention ago
are purged (soft-deleted, restorable), letters purged more than the restore window ago are
removed for good, and journal lines older than the journal retention are removed, each in
chunks of short transactions. Purges and removals are audited as ``retention``'s; a change of the
settings themselves is audited once, by the first process that starts with them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import structlog

from gridbus.workers.store import Store
from gridbus.workers.store.audit import AuditEntry

log = structlog.get_logger("gridbus.retention")

DAY_S = 86400.0


@dataclass(frozen=True)
class RetentionSettings:
    """Days: letters kept before purged; purged letters restorable; journal lines kept."""

    archive_days: float
    restore_days: float
    journal_days: float

    @classmethod
    def of(cls, settings) -> "RetentionSettings":
        return cls(settings.archive_retention_days, settings.archive_restore_days, settings.journal_retention_days)


class Retention:
    def __init__(
        self, store: Store, settings: RetentionSettings, *, who: str = "retention", interval_s: float = 3600.0,
        chunk: int = 1000, clock: Callable[[], float] = time.time,
    ):
        self.store, self.settings, self.who = store, settings, who
        self.interval_s, self.chunk, self.clock = interval_s, chunk, clock
        self._last = -float("inf")

    def record_settings(self) -> bool:
        """Audit the retention settings if they differ from the last ones audited; True if so."""
        wanted = self.settings.__dict__
        last = self.store.audit.last("retention")
        if last is not None and {k: last.detail.get(k) for k in wanted} == wanted:
            return False
        before = {k: last.detail.get(k) for k in wanted} if last is not None else None
        what = (f"retention set: archive {self.settings.archive_days:g} days, restorable {self.settings.restore_days:g} "
                f"days, journal {self.settings.journal_days:g} days")
        detail = {**wanted, "before": before} if before else wanted
        self.store.audit.append(AuditEntry(self.clock(), self.who, "retention", what, 0, None, detail))
        return True

    def run_due(self) -> None:
        """Enforce the retention if ``interval_s`` passed since the last time."""
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self.enforce()

    def enforce(self) -> dict[str, int]:
        """Purge, remove and forget what the settings say is past; how many of each."""
        at = self.clock()
        letters = self.store.dead_letters
        done = {"purged": letters.expire(self.settings.archive_days * DAY_S, at, self.who), "removed": 0, "journal": 0}
        while True:
            removed = letters.remove_expired(self.settings.restore_days * DAY_S, at, self.who, limit=self.chunk)
            done["removed"] += removed
            if removed < self.chunk:
                break
        cutoff = at - self.settings.journal_days * DAY_S
        while True:
            removed = self.store.journal.purge_older_than(cutoff, self.chunk)
            done["journal"] += removed
            if removed < self.chunk:
                break
        if any(done.values()):
            log.info("retention.enforced", **done)
        return done
