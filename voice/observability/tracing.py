"""OpenTelemetry spans: one per call (a connection's :class:`~voice.engine.Call`), one per answered turn as its
child, with the turn's stage timestamps as span events and its ``metrics`` fields as attributes.

``opentelemetry-api`` is optional (``pip install 'voice[otel]'``); it is imported once, and without it every
function here returns at once. With the API but no SDK configured, OpenTelemetry's own no-op tracer is used, and a
turn of a call whose span does not record (no SDK, or not sampled) costs nothing more. Turn
spans are written when the turn ends, with the times it recorded, so nothing is traced while audio flows.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from .metrics import agent_of, transport_of

try:
    from opentelemetry import trace
except ImportError:  # the extra is not installed: tracing is a no-op
    trace = None  # type: ignore[assignment]

INSTALL_HINT = "OpenTelemetry tracing needs the voice[otel] extra: pip install 'voice[otel]'"

_tracer: Any = trace.get_tracer("voice") if trace is not None else None
_call_spans: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def available() -> bool:
    """Whether ``opentelemetry-api`` is installed (spans are created; exported if an SDK is configured)."""
    return _tracer is not None


def _epoch_ns(monotonic: float, now_mono: float, now_ns: int) -> int:
    return now_ns - int((now_mono - monotonic) * 1e9)


def call_opened(call: Any, instance: str) -> None:
    """Start the call's span."""
    if _tracer is None:
        return
    _call_spans[call] = _tracer.start_span("voice.call", attributes={
        "voice.call.id": str(call.id), "voice.agent": agent_of(call), "voice.instance": instance,
        "voice.transport": transport_of(call),
    })


def call_closed(call: Any) -> None:
    """End the call's span."""
    if _tracer is None:
        return
    span = _call_spans.pop(call, None)
    if span is not None:
        span.end()


def turn_ended(call: Any, source: str, stamps: dict[str, Any], message: dict[str, Any], interrupted: bool) -> None:
    """Record a finished turn as a child span of its call's: from the end of the user's speech (or ``on_turn``'s
    start) to the reply's end. ``stamps``: the turn's monotonic timestamps by stage (``*_at``), ``message``: its
    ``metrics`` fields."""
    if _tracer is None:
        return
    parent = _call_spans.get(call)
    if parent is not None and not parent.is_recording():
        return  # no SDK configured, or the call was not sampled: its turns would not be recorded either
    context = trace.set_span_in_context(parent) if parent is not None and trace is not None else None
    now_mono, now_ns = time.monotonic(), time.time_ns()
    times = {name: at for name, at in stamps.items() if name.endswith("_at") and isinstance(at, float)}
    start = min(times.values(), default=now_mono)
    end = times.get("ended_at") or now_mono
    attributes: dict[str, Any] = {"voice.turn.source": source, "voice.turn.interrupted": interrupted}
    attributes |= {f"voice.turn.{k}": v for k, v in message.items() if k != "type" and v is not None}
    span = _tracer.start_span("voice.turn", context=context, attributes=attributes,
                              start_time=_epoch_ns(start, now_mono, now_ns))
    for name, at in sorted(times.items(), key=lambda item: item[1]):
        span.add_event(name.removesuffix("_at"), timestamp=_epoch_ns(at, now_mono, now_ns))
    span.end(end_time=_epoch_ns(max(end, start), now_mono, now_ns))
