"""aibridge_controlplane_spend_usd and aibridge_controlplane_budget_ratio: this month's
spend of the users and teams that spent most, and the share of their budget it is.

The label sets are bounded (at most `TOP` users and `TOP` teams, the highest spend
first). A scrape never waits for the database: it answers with the last values read,
and asks for a new read in the background when those are older than `INTERVAL`; a read
that fails leaves the last values and is logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from controlplane.store.db import DatabaseUnavailable
from controlplane.store.spend import Spending, SpendReport

log = logging.getLogger(__name__)

INTERVAL = 15.0  # seconds: the spend table is read at most this often
TOP = 100
SCOPES = ("user", "team")


class SpendMetrics(Collector):
    def __init__(
        self,
        spending: Spending,
        interval: float = INTERVAL,
        top: int = TOP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spending = spending
        self.interval = interval
        self.top = top
        self.clock = clock
        self.reports: dict[str, SpendReport] = {}
        self.reads = 0  # reads started, for tests
        self._read_at: float | None = None
        self._lock = threading.Lock()
        self.reading = False  # a read runs in the background

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self._read_if_stale()
        spent = GaugeMetricFamily(
            "aibridge_controlplane_spend_usd",
            f"USD spent this UTC month, by the {self.top} users and teams that spent most",
            labels=["scope", "name"],
        )
        ratio = GaugeMetricFamily(
            "aibridge_controlplane_budget_ratio",
            "This month's spend over the smallest monthly budget of the scope as a whole",
            labels=["scope", "name"],
        )
        for scope, report in self.reports.items():
            for line in report.lines:
                spent.add_metric([scope, line.name], line.spent_usd)
                if line.budget_usd:
                    ratio.add_metric([scope, line.name], line.spent_usd / line.budget_usd)
        yield spent
        yield ratio

    def _read_if_stale(self) -> None:
        with self._lock:
            now = self.clock()
            fresh = self._read_at is not None and now - self._read_at < self.interval
            if fresh or self.reading:
                return
            self.reading, self._read_at = True, now
            self.reads += 1
        threading.Thread(target=self._read, name="spend-metrics", daemon=True).start()

    def _read(self) -> None:
        try:
            self.reports = {s: self.spending.report(s, limit=self.top) for s in SCOPES}
        except DatabaseUnavailable as exc:  # a scrape must not fail: keep the last values
            log.warning("spend metrics: cannot read the spend table: %s", exc)
        except Exception:
            log.exception("spend metrics: reading the spend table failed")
        finally:
            with self._lock:
                self.reading = False
