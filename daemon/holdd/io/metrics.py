"""Prometheus metrics of the daemon (shell).

Everything lives in one `Metrics` object that owns its own
`CollectorRegistry`: no process-global registry, so tests, the demo and a
reload each get fresh counters, and nothing is registered at import time. The
metrics are those of docs/operations.md section 7; names start
with `holdd_`, units are seconds, counters end in `_total` (added by the
client library).

Updates are plain lock-protected increments, cheap enough to make from the
event loop. Values that are cheaper to read than to track (calls by state) are
read at scrape time from a callback; the scrape runs on the loop (httpd.py),
so the callback may read loop-owned structures without locking.

Metric reference (also in docs/operations.md):

    holdd_build_info{version}                           1
    holdd_notifications_total{kind,outcome}             decoded (outcome: accepted | dropped)
    holdd_notifications_dropped_total{reason}           rejected notifications, by reason
    holdd_notifications_unknown_name_total{name}        notifications whose name maps to no
                                                        event kind (add it to [notify] events)
    holdd_notify_connected                              1 while the stream is up
    holdd_notify_reconnects_total{reason}               stream reconnects
    holdd_notify_gap_seconds                            histogram of stream outages
    holdd_calls{state}                                  calls in the call table, by state
    holdd_rule_matches_total{rule}                      decisions made, by rule
    holdd_actions_total{action,result,mnemonic}         hold / unhold / would_hold outcomes
    holdd_api_budget_remaining{window}                  Call API points left (minute | day)
    holdd_api_budget_limit{window}                      Call API points per window
    holdd_rules_loaded                                  rules in the active rule set
    holdd_rules_last_reload_successful                  0 | 1 (Prometheus' own convention)
    holdd_rules_last_reload_success_timestamp_seconds   when the active rules were loaded
    holdd_rules_reloads_total{result}                   reload attempts (ok | failed)
    holdd_ledger_write_seconds{op}                      histogram of state database writes
    holdd_actions_queued                                holds / unholds waiting for a worker
    holdd_http_connections{listener}                    connections open on each HTTP listener
    holdd_http_connections_closed_total{listener,reason}  connections holdd closed (header
                                                        timeout, evicted, over the limit,
                                                        unparsable request; io/listener.py)
    holdd_webhook_requests_total{outcome}               webhook requests by outcome
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from holdd import __version__
from holdd.callapi.stats import ClientStats
from holdd.core.states import CallState
from holdd.io.listener import ListenerStats

#: Stream outages: a blip, a reconnect with backoff, a real outage.
_GAP_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
#: SQLite commits with synchronous=FULL: ~0.15 ms median on an SSD (io/store/sqlite.py).
_WRITE_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)

#: The most distinct names `holdd_notifications_unknown_name_total` keeps apart.
UNKNOWN_NAME_LABELS = 50

CallCounts = Callable[[], Mapping[CallState, int]]


class QueuedActions(Protocol):
    """What `track_actions` reads of the runner."""

    @property
    def queued(self) -> int: ...


class _CallsByState(Collector):
    """`holdd_calls{state}` read from the call table at scrape time."""

    def __init__(self, counts: CallCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterable[Metric]:
        counts = self._counts()
        family = GaugeMetricFamily(
            "holdd_calls", "Calls in the call table, by state.", labels=["state"]
        )
        # Every state, zeros included, so a series never disappears.
        for state in CallState:
            family.add_metric([state.value], counts.get(state, 0))
        yield family

    def describe(self) -> Iterable[Metric]:
        # Without this the registry would call collect() (and the callback) on register.
        yield GaugeMetricFamily(
            "holdd_calls", "Calls in the call table, by state.", labels=["state"]
        )


#: (name, help, labels, the ClientStats field) of every Call API client counter.
_CALLAPI_COUNTERS = (
    ("holdd_callapi_requests", "Call API requests sent, by method.", ["method"], "requests"),
    (
        "holdd_callapi_answers",
        "Call API answers by method and result ('ok' or the error mnemonic).",
        ["method", "result"],
        "answers",
    ),
    (
        "holdd_callapi_unknown_outcomes",
        "Call API exchanges whose outcome is unknown (timeout, connection lost, HTTP 5xx).",
        ["method", "reason"],
        "unknown_outcomes",
    ),
    (
        "holdd_callapi_not_sent",
        "Call API requests that never went out (no connection, no slot, rate gate), by reason.",
        ["method", "reason"],
        "not_sent",
    ),
    (
        "holdd_callapi_unknown_mnemonics",
        "Call API error mnemonics the reference does not list, by code and mnemonic.",
        ["code", "mnemonic"],
        "unknown_mnemonics",
    ),
    ("holdd_callapi_logins", "login.user calls, by reason.", ["reason"], "logins"),
    (
        "holdd_callapi_numbers_out_of_range",
        "Numbers outside the signed 64-bit range in answers (not used), by method and field.",
        ["method", "field"],
        "out_of_range",
    ),
    (
        "holdd_callapi_rate_limited",
        "limit_exceeded answers, by limit type.",
        ["limit"],
        "rate_limited",
    ),
)


class _CallApiCounters(Collector):
    """The Call API client's counters (callapi/stats.py), read at scrape time."""

    def __init__(self) -> None:
        self.stats = ClientStats()

    def collect(self) -> Iterable[Metric]:
        for name, doc, labels, attr in _CALLAPI_COUNTERS:
            family = CounterMetricFamily(name, doc, labels=labels)
            counts: Mapping[Any, int] = getattr(self.stats, attr)
            for key, value in counts.items():
                values = key if isinstance(key, tuple) else (key,)
                family.add_metric([str(v) for v in values], value)
            yield family
        bad = CounterMetricFamily(
            "holdd_callapi_bad_list_entries",
            "list.calls entries without a usable call_session_id.",
        )
        bad.add_metric([], self.stats.bad_list_entries)
        yield bad

    def describe(self) -> Iterable[Metric]:
        for name, doc, labels, _attr in _CALLAPI_COUNTERS:
            yield CounterMetricFamily(name, doc, labels=labels)
        yield CounterMetricFamily("holdd_callapi_bad_list_entries", "")


class _HttpCounters(Collector):
    """The HTTP listeners' connections and the webhook's requests
    (io/listener.py `ListenerStats`, io/webhook.py `counts`), read at scrape time."""

    def __init__(self) -> None:
        self.listeners: dict[str, ListenerStats] = {}
        self.webhook: Mapping[str, int] = {}

    def collect(self) -> Iterable[Metric]:
        open_now, closed, webhook = self._families()
        for name, stats in sorted(self.listeners.items()):
            open_now.add_metric([name], stats.open)
            for reason, count in sorted(stats.closed.items()):
                closed.add_metric([name, reason], count)
        for outcome, count in sorted(self.webhook.items()):
            webhook.add_metric([outcome], count)
        return (open_now, closed, webhook)

    def describe(self) -> Iterable[Metric]:
        return self._families()

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, CounterMetricFamily, CounterMetricFamily]:
        return (
            GaugeMetricFamily(
                "holdd_http_connections",
                "Connections open on each HTTP listener (http: probes, webhook).",
                labels=["listener"],
            ),
            CounterMetricFamily(
                "holdd_http_connections_closed",
                "Connections holdd closed, by listener and reason (header_timeout, evicted,"
                " over_limit, bad_request).",
                labels=["listener", "reason"],
            ),
            CounterMetricFamily(
                "holdd_webhook_requests",
                "Webhook requests by outcome (accepted, unauthorized, bad_request, too_large,"
                " body_timeout, read_error, busy).",
                labels=["outcome"],
            ),
        )


class Metrics:
    """The daemon's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        Info("holdd_build", "The running holdd.", registry=r).info({"version": __version__})
        self.notifications = Counter(
            "holdd_notifications",
            "Notifications decoded, by event kind and outcome (accepted or dropped).",
            ["kind", "outcome"],
            registry=r,
        )
        self.drops = Counter(
            "holdd_notifications_dropped",
            "Notifications dropped, by reason.",
            ["reason"],
            registry=r,
        )
        self.unknown_names = Counter(
            "holdd_notifications_unknown_name",
            "Notifications whose name maps to no event kind, by the name as sent"
            " (map it in [notify] events).",
            ["name"],
            registry=r,
        )
        self._unknown_seen: set[str] = set()
        self.notify_connected = Gauge(
            "holdd_notify_connected", "1 while the notification stream is connected.", registry=r
        )
        self.reconnects = Counter(
            "holdd_notify_reconnects",
            "Reconnects of the notification stream, by reason.",
            ["reason"],
            registry=r,
        )
        self.stream_gap = Histogram(
            "holdd_notify_gap_seconds",
            "Time the notification stream was down, per outage.",
            buckets=_GAP_BUCKETS,
            registry=r,
        )
        self.rule_matches = Counter(
            "holdd_rule_matches", "Rules that matched a call in Talk.", ["rule"], registry=r
        )
        self.actions = Counter(
            "holdd_actions",
            "Call API actions by action, result and error mnemonic ('' when none).",
            ["action", "result", "mnemonic"],
            registry=r,
        )
        self.api_budget_remaining = Gauge(
            "holdd_api_budget_remaining",
            "Call API points left in the window, from the last answer's metadata.limits.",
            ["window"],
            registry=r,
        )
        self.api_budget_limit = Gauge(
            "holdd_api_budget_limit",
            "Call API points per window, from the last answer's metadata.limits.",
            ["window"],
            registry=r,
        )
        self.rules_loaded = Gauge("holdd_rules_loaded", "Rules in the active rule set.", registry=r)
        self.rules_reload_ok = Gauge(
            "holdd_rules_last_reload_successful",
            "1 if the last rules (re)load succeeded, 0 if the previous rules were kept.",
            registry=r,
        )
        self.rules_reload_time = Gauge(
            "holdd_rules_last_reload_success_timestamp_seconds",
            "When the active rules were loaded (seconds since the epoch).",
            registry=r,
        )
        self.rules_reloads = Counter(
            "holdd_rules_reloads", "Rules reload attempts, by result.", ["result"], registry=r
        )
        self.ledger_write = Histogram(
            "holdd_ledger_write_seconds",
            "How long a state database write blocked the event loop, by operation.",
            ["op"],
            buckets=_WRITE_BUCKETS,
            registry=r,
        )
        self.store_commits = Counter(
            "holdd_store_commits",
            "Transactions committed to the state store (one per loop turn that changed state).",
            registry=r,
        )
        self.state_write_failures = Counter(
            "holdd_state_write_failures",
            "Outages of the state store: writes failing until one succeeds again.",
            registry=r,
        )
        self.instances_live = Gauge(
            "holdd_instances_live",
            "Instances holding a valid lease on the shared store (1 with SQLite).",
            registry=r,
        )
        self.instances_live.set(1)
        self.adopted = Counter(
            "holdd_adopted",
            "Claims and timers taken over from instances whose lease expired, by kind.",
            ["kind"],
            registry=r,
        )
        self._callapi = _CallApiCounters()
        r.register(self._callapi)
        self.input_queue = Gauge(
            "holdd_input_queue_depth",
            "Inputs (notifications, results, timers) queued for the daemon's loop.",
            registry=r,
        )
        self.api_queue = Gauge(
            "holdd_callapi_queue_depth",
            "Call API requests waiting for a free connection (max_connections).",
            registry=r,
        )
        self.api_queue_oldest = Gauge(
            "holdd_callapi_queue_oldest_wait_seconds",
            "How long the longest-waiting Call API request has waited for a connection.",
            registry=r,
        )
        self.actions_queued = Gauge(
            "holdd_actions_queued",
            "Holds and unholds claimed and waiting for one of the runner's workers.",
            registry=r,
        )
        self.retries = Counter(
            "holdd_action_retries",
            "Call API requests of an action sent again (or looked up), by action and reason.",
            ["action", "reason"],
            registry=r,
        )
        self._http = _HttpCounters()
        r.register(self._http)
        #: Labelled children already looked up, by metric and label values:
        #: `labels()` takes a lock and checks its arguments on every call,
        #: several times per held call; a child, once made, never changes.
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}

    def _child(self, metric: MetricWrapperBase, *values: str) -> Any:
        """`metric.labels(*values)`, looked up once."""
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    # -- recording helpers (one per thing the daemon observes) ---------------

    def notification(self, kind: str, *, dropped_reason: str | None = None) -> None:
        """One decoded notification; `dropped_reason` when it was rejected."""
        if dropped_reason is None:
            self._child(self.notifications, kind, "accepted").inc()
        else:
            self._child(self.notifications, kind, "dropped").inc()
            self._child(self.drops, dropped_reason).inc()

    def unknown_name(self, name: str) -> None:
        """A notification named `name` (as sent) that maps to no event kind.

        The label is the operator's own name, so it is bounded: at most
        `UNKNOWN_NAME_LABELS` distinct names of at most 64 characters each;
        further names are counted under "(other)".
        """
        label = name[:64]
        if label not in self._unknown_seen:
            if len(self._unknown_seen) >= UNKNOWN_NAME_LABELS:
                label = "(other)"
            else:
                self._unknown_seen.add(label)
        self._child(self.unknown_names, label).inc()

    def stream_up(self) -> None:
        self.notify_connected.set(1)

    def stream_down(self) -> None:
        self.notify_connected.set(0)

    def reconnected(self, reason: str, gap_seconds: float) -> None:
        """The stream is back after `gap_seconds` without it."""
        self._child(self.reconnects, reason).inc()
        self.stream_gap.observe(max(gap_seconds, 0.0))

    def rule_matched(self, rule: str) -> None:
        self._child(self.rule_matches, rule).inc()

    def action(self, action: str, result: str, mnemonic: str | None = None) -> None:
        self._child(self.actions, action, result, mnemonic or "").inc()

    def api_budget(
        self,
        *,
        minute_remaining: int | None = None,
        day_remaining: int | None = None,
        minute_limit: int | None = None,
        day_limit: int | None = None,
    ) -> None:
        """Values from `metadata.limits`; None leaves a gauge unchanged."""
        for gauge, window, value in (
            (self.api_budget_remaining, "minute", minute_remaining),
            (self.api_budget_remaining, "day", day_remaining),
            (self.api_budget_limit, "minute", minute_limit),
            (self.api_budget_limit, "day", day_limit),
        ):
            if value is not None:
                self._child(gauge, window).set(value)

    def rules_reloaded(self, ok: bool, now: float, rules: int | None = None) -> None:
        """A (re)load of the rules; on failure the previous rules stay active,
        so their count and timestamp are left as they were."""
        self._child(self.rules_reloads, "ok" if ok else "failed").inc()
        self.rules_reload_ok.set(1 if ok else 0)
        if ok:
            self.rules_reload_time.set(now)
            if rules is not None:
                self.rules_loaded.set(rules)

    def retried(self, action: str, reason: str) -> None:
        self._child(self.retries, action, reason).inc()

    def ledger_written(self, op: str, seconds: float) -> None:
        """`StateDb(on_write=metrics.ledger_written)`."""
        self._child(self.ledger_write, op).observe(seconds)

    def track_queues(
        self,
        inputs: Callable[[], float],
        api_waiting: Callable[[], float],
        api_oldest_wait: Callable[[], float],
    ) -> None:
        """Read the queue depths at scrape time: the daemon's input queue, and
        the requests waiting for a Call API connection with the oldest wait."""
        self.input_queue.set_function(inputs)
        self.api_queue.set_function(api_waiting)
        self.api_queue_oldest.set_function(api_oldest_wait)

    def track_actions(self, runner: QueuedActions) -> None:
        """Read how many claimed actions wait for a worker (io/runner.py) at scrape time."""
        self.actions_queued.set_function(lambda: runner.queued)

    def track_callapi(self, stats: ClientStats) -> None:
        """Export the Call API client's counters (`CallApiClient.stats`)."""
        self._callapi.stats = stats

    def track_listener(self, name: str, stats: ListenerStats) -> None:
        """Export an HTTP listener's connections (`Listener.stats`) as `listener=name`."""
        self._http.listeners[name] = stats

    def track_webhook(self, counts: Mapping[str, int]) -> None:
        """Export the webhook's requests by outcome (`WebhookReceiver.counts`)."""
        self._http.webhook = counts

    def track_calls(self, counts: CallCounts) -> None:
        """Report `holdd_calls{state}` from `counts()` (e.g. `CallTable.counts`) at scrape time."""
        self.registry.register(_CallsByState(counts))
