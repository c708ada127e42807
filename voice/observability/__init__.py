"""What an operator watches: Prometheus metrics (:mod:`.metrics`, ``voice[metrics]``) and OpenTelemetry spans
(:mod:`.tracing`, ``voice[otel]``). Both are optional and cost nothing per audio frame; without their package the
recording functions return at once. The metrics are listed in docs/monitoring.md.

The engine, replies, providers and transports call the functions re-exported here, one line per event.
"""

from .metrics import (
    barge_in,
    connection_opened,
    interrupted,
    provider_error,
    provider_reconnect,
    slow_client_closed,
    turn_latencies,
    turn_started,
    watch,
)
from .tracing import call_closed, call_opened, turn_ended

__all__ = [
    "barge_in",
    "call_closed",
    "call_opened",
    "connection_opened",
    "interrupted",
    "provider_error",
    "provider_reconnect",
    "slow_client_closed",
    "turn_ended",
    "turn_latencies",
    "turn_started",
    "watch",
]
