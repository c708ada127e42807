"""The WebRTC side of a server: its options, its live peer connections, and the offer → answer handler."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException

from ... import protocol
from ...engine import Runtime
from .options import OfferError, WebRTCOptions, parse_offer

if TYPE_CHECKING:
    from .session import WebRTCSession


class WebRTCGateway:
    """The WebRTC side of a server: options, the live sessions, and the offer → answer handler."""

    def __init__(self, runtime: Runtime, options: WebRTCOptions) -> None:
        self.runtime = runtime
        self.options = options
        self.sessions: set[WebRTCSession] = set()
        self._reserved = 0  # offers being answered: they count toward max_peers
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def peer_count(self) -> int:
        """Peer connections open or being negotiated."""
        return len(self.sessions) + self._reserved

    async def handle_offer(
        self, agent_name: str, instance: str, body: bytes, query: dict[str, str], principal: Any = None
    ) -> dict[str, str]:
        """The answer for one offer, or HTTPException 400/404/503."""
        sdp, auto_start = parse_offer(body)
        if self.runtime.resolve(agent_name) is None:
            raise HTTPException(404, f"unknown agent {agent_name[:60]!r}")
        if self.peer_count >= self.options.max_peers:
            raise HTTPException(503, f"too many WebRTC connections (max {self.options.max_peers})",
                                headers={"Retry-After": "5"})
        self._reserved += 1
        from .session import WebRTCSession  # aiortc is imported only when a peer connects

        session: WebRTCSession | None = None
        try:
            session = WebRTCSession(self.runtime, self.options, query, auto_start, principal, self._track)
            self.sessions.add(session)
            if not await session.open(agent_name, instance):  # unregistered meanwhile
                raise HTTPException(404, f"unknown agent {agent_name[:60]!r}")
            answer = await session.answer(sdp)
            return {"sdp": answer, "type": "answer"}
        except OfferError as exc:
            await session.close(None, "bad offer")  # type: ignore[union-attr]  # raised after the session exists
            raise HTTPException(400, str(exc)) from None
        except BaseException:
            if session is not None:
                await session.close(None, "negotiation failed")
            raise
        finally:
            self._reserved -= 1

    def _track(self, session: WebRTCSession, task: asyncio.Task[None]) -> None:
        """A session started its teardown: forget it once done; shutdown waits for it meanwhile."""
        self._closing.add(task)

        def done(_: asyncio.Task[None]) -> None:
            self._closing.discard(task)
            self.sessions.discard(session)

        task.add_done_callback(done)

    async def close_all(self) -> None:
        """End every WebRTC connection (server shutdown)."""
        await asyncio.gather(
            *(s.close(protocol.CLOSE_GOING_AWAY, "server shutting down") for s in list(self.sessions)),
            return_exceptions=True,
        )
        await asyncio.gather(*list(self._closing), return_exceptions=True)
