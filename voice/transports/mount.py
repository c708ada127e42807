"""Helpers for add-ons that mount routes on a server (WebRTC signaling, Twilio): find the runtime, gate and router
behind what the user passed, and put the routes ahead of catch-all static files."""

from __future__ import annotations

from typing import Any, Protocol, cast

from fastapi import APIRouter, FastAPI

from ..engine import Runtime
from .gate import Gate


class Mountable(Protocol):
    """A server add-ons can mount on (:class:`voice.VoiceServer` is one)."""

    runtime: Runtime
    gate: Gate
    router: APIRouter


def mount_target(target: Any, what: str) -> tuple[Mountable, APIRouter]:
    """The server whose runtime serves the calls, and the router that gets the routes, from a
    :class:`voice.VoiceServer` or an app made by :func:`voice.create_app`."""
    if isinstance(target, FastAPI):
        server = getattr(target.state, "voice", None)
        if _mountable(server):
            return cast(Mountable, server), target.router
    elif _mountable(target):
        return cast(Mountable, target), target.router
    raise TypeError(f"{what} needs a VoiceServer, or an app made by voice.create_app")


def _mountable(obj: Any) -> bool:
    return all(hasattr(obj, name) for name in ("runtime", "gate", "router")) and isinstance(obj.runtime, Runtime)


def include_first(router: APIRouter, routes: APIRouter) -> None:
    """Add ``routes`` ahead of the router's existing ones, so a static files mount at "/"
    (``create_app(static_dir=...)``) cannot shadow them."""
    before = len(router.routes)
    router.include_router(routes)
    added = router.routes[before:]
    del router.routes[before:]
    router.routes[0:0] = added
