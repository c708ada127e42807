"""``GET /metrics``: the Prometheus text exposition of a voice server (docs/monitoring.md lists every metric).

Metrics are the optional extra ``voice[metrics]`` (``prometheus-client``). Without it the route answers 501 with the
install hint, unless metrics were asked for explicitly (``create_app(metrics=True)`` or ``VOICE_METRICS=1``): then
start-up stops with a one-line error naming the extra.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from .. import observability
from ..observability import metrics
from .mount import include_first, mount_target


class MetricsUnavailable(RuntimeError):
    """Metrics were asked for but ``prometheus-client`` is not installed."""


def metrics_wanted(value: bool | None = None) -> bool | None:
    """``value`` if given, else ``VOICE_METRICS`` (1/true/on: required, 0/false/off: none, unset: if installed)."""
    if value is not None:
        return value
    env = os.environ.get("VOICE_METRICS", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    return None


def mount_metrics(server: Any, *, enabled: bool | None = None, path: str = "/metrics") -> bool:
    """Add ``GET path`` to ``server`` (a :class:`~voice.server.VoiceServer` or an app of :func:`voice.create_app`)
    and count its live calls. ``enabled``: True requires ``prometheus-client`` (raises :class:`MetricsUnavailable`
    without it), False mounts nothing, None (default: ``VOICE_METRICS``) mounts the route, answering 501 without
    the package. Returns whether metrics are served."""
    wanted = metrics_wanted(enabled)
    if wanted is False:
        return False
    if wanted and not metrics.available():
        raise MetricsUnavailable(metrics.INSTALL_HINT)
    voice_server, router = mount_target(server, "mount_metrics")
    routes = APIRouter()
    if not metrics.available():
        @routes.get(path, include_in_schema=False)
        async def metrics_missing() -> Response:
            return JSONResponse({"detail": metrics.INSTALL_HINT}, status_code=501)

        include_first(router, routes)
        return False
    observability.watch(voice_server.runtime)

    @routes.get(path, include_in_schema=False)
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    include_first(router, routes)
    return True
