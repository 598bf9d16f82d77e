"""What an operator's Prometheus scrapes: counters kept as things happen (updates in, sends
out, their latency, the messenger's 429s and 5xx) and gauges read from the database at scrape
time (queue depth, unacknowledged alerts, cases past target). One registry per app, so two
apps in one process (the tests) never share a series."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PRIORITIES = {0: "alert", 10: "reply", 50: "notice", 100: "campaign"}
# Seconds: a message's request (a messenger answers in 50–500 ms; a stuck one times out at 10+).
SEND_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Seconds from queued to sent: an alert should go out in well under a second.
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


def lane(priority: int) -> str:
    """The name of a delivery lane (alert, reply, notice, campaign)."""
    return PRIORITIES.get(priority, str(priority))


class Metrics:
    """The app's series."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.inbound = Counter("safeschool_inbound_updates", "Inbound updates stored, by channel",
                               ["channel"], registry=r)
        self.sent = Counter("safeschool_messages_sent", "Messages sent, by channel and lane",
                            ["channel", "lane"], registry=r)
        self.send_seconds = Histogram("safeschool_send_seconds",
                                      "Time one send took at the messenger",
                                      ["channel", "lane"], buckets=SEND_BUCKETS, registry=r)
        self.wait_seconds = Histogram("safeschool_delivery_seconds",
                                      "Time from queued to sent, by channel and lane (a "
                                      "campaign's includes the quiet hours it waited)",
                                      ["channel", "lane"], buckets=WAIT_BUCKETS, registry=r)
        self.rate_limited = Counter("safeschool_rate_limited",
                                    "429 answers (too many requests), by channel",
                                    ["channel"], registry=r)
        self.transient = Counter("safeschool_transient_errors",
                                 "5xx answers, timeouts and network errors, by channel",
                                 ["channel"], registry=r)
        self.outbox_depth = Gauge("safeschool_outbox_depth",
                                  "Messages waiting or being sent, by channel and lane",
                                  ["channel", "lane"], registry=r)
        self.oldest_alert = Gauge("safeschool_oldest_pending_alert_seconds",
                                  "How long the oldest unsent alert has waited (0: none)",
                                  registry=r)
        self.unacknowledged = Gauge("safeschool_alerts_unacknowledged",
                                    "Cases nobody has acknowledged yet, by escalation step "
                                    "reached", ["step"], registry=r)
        self.past_target = Gauge("safeschool_cases_past_target",
                                 "Open cases past their resolution target", registry=r)
        self.channel_up = Gauge("safeschool_channel_up",
                                "1 when a channel may send, 0 while paused or starting",
                                ["channel"], registry=r)
        self.leader = Gauge("safeschool_leader",
                            "1 when this process runs the clock jobs (escalation, campaigns, "
                            "reports, retention)", registry=r)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
