"""Prometheus metrics of a voice server: the metric objects, and one small recording function per thing that
happens (a connection, a turn, an interruption, a provider failure, ...).

``prometheus-client`` is optional (``pip install 'voice[metrics]'``): without it every function here returns at
once and :func:`available` is False. Nothing is recorded per audio frame; the gauges of live calls and connections
are computed when ``/metrics`` is scraped, from the runtimes passed to :func:`watch`.
"""

from __future__ import annotations

import weakref
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from typing import Any

try:
    import prometheus_client as prom
    from prometheus_client.core import GaugeMetricFamily
except ImportError:  # the extra is not installed: recording is a no-op
    prom = None  # type: ignore[assignment]

INSTALL_HINT = "Prometheus metrics need the voice[metrics] extra: pip install 'voice[metrics]'"

#: seconds; a voice turn's stages run from a few milliseconds (fakes, an STT final) to seconds (a slow LLM)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

#: histogram name → (help, the ``metrics`` message field it is taken from, in milliseconds)
STAGES = {
    "voice_stt_final_seconds": ("End of the user's speech to the final transcript.", "stt_ms"),
    "voice_first_text_seconds": ("on_turn called to its first text (an LLM's time to first token).", "first_text_ms"),
    "voice_tts_first_audio_seconds": ("First sentence handed to TTS to its first audio.", "tts_first_audio_ms"),
    "voice_voice_to_voice_seconds": ("End of the user's speech to the reply's first audio sent.", "voice_to_voice_ms"),
}


def available() -> bool:
    """Whether ``prometheus-client`` is installed (metrics are recorded and can be exposed)."""
    return prom is not None


def transport_of(call: Any) -> str:
    """A call's ``transport`` label: its peer's ``transport`` attribute (websocket, webrtc, twilio)."""
    return str(getattr(call.peer, "transport", "other"))


def agent_of(call: Any) -> str:
    """A call's ``agent`` label: the registered agent name."""
    return str(getattr(call.agent, "name", None) or type(call.agent).__name__)


class _Metrics:
    """The metric objects, created once when ``prometheus-client`` is importable."""

    def __init__(self, registry: Any) -> None:
        assert prom is not None
        call = ("transport", "agent")
        self.connections = prom.Counter(
            "voice_connections", "Client connections opened.", ["transport"], registry=registry)
        self.turns = prom.Counter(
            "voice_turns", "User turns answered, by source (voice or typed text).", [*call, "source"],
            registry=registry)
        self.interruptions = prom.Counter(
            "voice_interruptions", "Replies cut short by the user (speech, a new turn or the client's interrupt).",
            call, registry=registry)
        self.barge_ins = prom.Counter(
            "voice_barge_ins", "Times the user's speech over an audible reply paused it (pause, then decide).",
            call, registry=registry)
        self.barge_ins_resumed = prom.Counter(
            "voice_barge_ins_resumed", "Paused replies that played on: a backchannel or a noise, not an interruption.",
            call, registry=registry)
        self.stages = {
            name: prom.Histogram(name, text, call, buckets=LATENCY_BUCKETS, registry=registry)
            for name, (text, _) in STAGES.items()
        }
        self.provider_errors = prom.Counter(
            "voice_provider_errors", "Speech provider failures (kind: stt or tts).", ["kind", "provider"],
            registry=registry)
        self.provider_reconnects = prom.Counter(
            "voice_provider_reconnects", "Speech provider sessions re-established after a failure.",
            ["kind", "provider"], registry=registry)
        self.slow_clients = prom.Counter(
            "voice_slow_clients_closed", "Connections closed because the client did not read what was queued.",
            ["transport"], registry=registry)
        registry.register(_LiveCalls())


_runtimes: weakref.WeakSet[Any] = weakref.WeakSet()


def watch(runtime: Any) -> None:
    """Count ``runtime``'s live calls in the ``voice_active_calls`` and ``voice_open_connections`` gauges."""
    _runtimes.add(runtime)


class _LiveCalls:
    """Scrape-time gauges: nothing is kept up to date on the hot path, the calls are counted when asked."""

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        calls, connections = Tally[tuple[str, str]](), Tally[tuple[str, str]]()
        for runtime in list(_runtimes):
            for call in runtime.live_calls():
                key = (transport_of(call), agent_of(call))
                connections[key] += 1
                if call.in_call:
                    calls[key] += 1
        for name, text, tally in (
            ("voice_active_calls", "Calls in progress (start_call accepted, not ended).", calls),
            ("voice_open_connections", "Client connections open now, in a call or not.", connections),
        ):
            family = GaugeMetricFamily(name, text, labels=["transport", "agent"])
            for (transport, agent), count in sorted(tally.items()):
                family.add_metric([transport, agent], count)
            yield family


METRICS: _Metrics | None = _Metrics(prom.REGISTRY) if prom is not None else None


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric in the default registry (voice's, the process's, the app's own) and
    its content type."""
    if prom is None:
        raise RuntimeError(INSTALL_HINT)
    return prom.generate_latest(prom.REGISTRY), prom.CONTENT_TYPE_LATEST


# --- recording: one call per event, none per audio frame ---------------------------------------------------------


def _count(pick: Callable[[_Metrics], Any], *labels: str) -> None:
    if METRICS is not None:
        pick(METRICS).labels(*labels).inc()


def connection_opened(transport: str) -> None:
    """A client connected (any wire)."""
    _count(lambda m: m.connections, transport)


def turn_started(call: Any, source: str) -> None:
    """A user turn is being answered (``source``: voice or text)."""
    _count(lambda m: m.turns, transport_of(call), agent_of(call), source)


def interrupted(call: Any) -> None:
    """The user cut a reply short."""
    _count(lambda m: m.interruptions, transport_of(call), agent_of(call))


def barge_in(call: Any, resumed: bool) -> None:
    """Speech over an audible reply paused it (``resumed=False``), or the paused reply played on (True)."""
    _count(lambda m: m.barge_ins_resumed if resumed else m.barge_ins, transport_of(call), agent_of(call))


def turn_latencies(call: Any, message: dict[str, Any]) -> None:
    """A voice turn's stage latencies, from its ``metrics`` message (milliseconds; missing stages are skipped)."""
    if METRICS is None:
        return
    labels = (transport_of(call), agent_of(call))
    for name, (_, field) in STAGES.items():
        value = message.get(field)
        if value is not None:
            METRICS.stages[name].labels(*labels).observe(value / 1000)


def provider_error(kind: str, provider: str) -> None:
    """A speech provider failed (``kind``: stt or tts; ``provider``: its class or service name)."""
    _count(lambda m: m.provider_errors, kind, provider)


def provider_reconnect(kind: str, provider: str) -> None:
    """A speech provider session was re-established after a failure."""
    _count(lambda m: m.provider_reconnects, kind, provider)


def slow_client_closed(transport: str) -> None:
    """A client that does not read was closed instead of being buffered without bound."""
    _count(lambda m: m.slow_clients, transport)
