"""Carrying out turn-taking decisions: the replies one call runs, and what happens to each when it ends.

:class:`Floor` executes the actions :class:`~voice.engine.turn_taking.TurnTaking` returns (start a reply, hold one,
release it, drop it, interrupt the one playing, say fixed text) and, when a reply ends, writes what the user heard to
the instance's transcript — the only place replies reach history.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from .. import observability
from .._aio import TaskSet, maybe_await
from ..agent import BaseAgent, VoiceAgent
from ..history import Transcript
from ..reply import Reply, ReplyHost, TurnMetrics
from .turn_events import (
    Action,
    CancelSpeech,
    DropReply,
    FinishUtterance,
    Interrupt,
    PausePlayback,
    ReleaseReply,
    ReplyEnded,
    ResumePlayback,
    StartReply,
    StartSpeech,
    UserIdle,
)
from .turn_taking import TurnTaking

log = logging.getLogger("voice.call")

#: how long a reply waits for other processes' history before it starts without it (only a failing store is slower)
REFRESH_TIMEOUT = 1.0


def turn_metrics(reply: Reply) -> dict[str, Any]:
    """A reply's ``metrics`` message fields (without its ``type``): sent to the client, stored with the reply."""
    return {k: v for k, v in reply.metrics.message().items() if k != "type"}


class FloorHost(ReplyHost, Protocol):
    """The call as its floor sees it."""

    agent: BaseAgent
    transcript: Transcript

    def reply_phase(self, reply: Reply, phase: str) -> None:
        """A reply reached a phase (see :data:`voice.reply.reply.PhaseListener`)."""

    def reply_interrupted(self) -> None:
        """A reply was cut: the client must hear the status again."""

    def finish_utterance(self) -> None:
        """Ask the STT for the final transcript of the utterance in progress now."""

    def user_idle(self, seconds: float, count: int) -> None:
        """Tell the agent the user has been silent."""


class Floor:
    """The replies of one call (``call`` is its :class:`~voice.engine.call.Call`)."""

    def __init__(self, call: FloorHost, turns: TurnTaking, post: Callable[[ReplyEnded], None]) -> None:
        self.call = call
        self.turns = turns
        self._post = post
        self.replies: dict[int, Reply] = {}
        self._speeches: dict[int, asyncio.Future[None]] = {}
        self._next_token = 0
        self._tasks = TaskSet("floor")

    # --- speak requests -------------------------------------------------------------------------------------

    def new_speech(self) -> tuple[int, asyncio.Future[None]]:
        """A token for a speak request and the future that resolves when it has been said (or never will be)."""
        self._next_token += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._speeches[self._next_token] = future
        return self._next_token, future

    def _speech_done(self, token: int) -> None:
        future = self._speeches.pop(token, None)
        if future is not None and not future.done():
            future.set_result(None)

    # --- actions --------------------------------------------------------------------------------------------

    async def run(self, actions: list[Action]) -> None:
        """Carry out ``actions`` in order."""
        for action in actions:
            if isinstance(action, StartReply):
                await self._refresh_history()
                self._start_reply(action)
            elif isinstance(action, ReleaseReply):
                self._release(action)
            elif isinstance(action, DropReply):
                self._drop(action.reply)
            elif isinstance(action, Interrupt):
                await self._interrupt(action)
            elif isinstance(action, StartSpeech):
                self._start_speech(action)
            elif isinstance(action, CancelSpeech):
                self._speech_done(action.token)
            elif isinstance(action, PausePlayback | ResumePlayback):
                self._pause(action)
            elif isinstance(action, FinishUtterance):
                self.call.finish_utterance()
            elif isinstance(action, UserIdle):
                self.call.user_idle(action.seconds, action.count)

    def _start_reply(self, action: StartReply) -> None:
        call = self.call
        agent = call.agent
        assert isinstance(agent, VoiceAgent)
        if not action.held:
            call.send({"type": "transcript", "role": "user", "text": action.text})
            observability.turn_started(call, action.source)
        metrics = TurnMetrics(speech_ended_at=action.speech_ended_at, final_at=action.final_at)
        reply = Reply(
            call, agent, call.reply_phase, transcript=action.text, history=agent.recent_messages(),
            speak=call.in_call, source=action.source, metrics=metrics, held=action.held,
        )
        self._watch(action.reply, reply.start())
        if not action.held:  # stored after the reply took its history snapshot; the reply does not wait for it
            call.transcript.user_turn(action.text)

    async def _refresh_history(self) -> None:
        """With a store other processes write to as well, bring what they stored for this instance into the history
        a reply is about to snapshot (one indexed query). A store of this process alone: nothing to do."""
        transcript = self.call.transcript
        if not transcript.store.shared:
            return
        try:
            await asyncio.wait_for(transcript.refresh(), REFRESH_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - the reply goes on with the history it has
            log.warning("history of %s/%s not refreshed: %r", transcript.agent, transcript.instance, exc)

    def _release(self, action: ReleaseReply) -> None:
        reply = self.replies.get(action.reply)
        if reply is None:
            return
        self.call.send({"type": "transcript", "role": "user", "text": action.text})
        reply.release(action.speech_ended_at, action.final_at or time.monotonic())
        observability.turn_started(self.call, "voice")
        self.call.transcript.user_turn(action.text)

    def _drop(self, reply_id: int) -> None:
        reply = self.replies.get(reply_id)
        if reply is not None:
            reply.save = False
            reply.cancel()

    def _start_speech(self, action: StartSpeech) -> None:
        call = self.call
        agent = call.agent
        assert isinstance(agent, VoiceAgent)
        reply = Reply(
            call, agent, call.reply_phase, fixed_text=action.text, speak=call.in_call, source="speak",
            save=action.save, interruptible=action.interruptible,
        )
        self._watch(action.reply, reply.start(), token=action.token)

    def _pause(self, action: PausePlayback | ResumePlayback) -> None:
        """Hold the reply's audio while the user may be interrupting, or play on."""
        if action.reply not in self.replies:
            return
        output = self.call.output
        if isinstance(action, PausePlayback):
            self.call.send({"type": "playback_pause"})
            output.pause()
        else:
            output.resume()
            self.call.send({"type": "playback_resume"})
        observability.barge_in(self.call, resumed=isinstance(action, ResumePlayback))

    async def _interrupt(self, action: Interrupt) -> None:
        """Cancel the reply, stop its audio, store what was heard, say so."""
        call = self.call
        reply = self.replies.get(action.reply)
        if reply is None:
            return
        reply.cancel()
        if action.hook:  # the user's doing (the call's end cuts replies without the hook)
            observability.interrupted(call)
        audible = reply.audio_started
        if action.notify and audible:
            call.send({"type": "playback_interrupt"})
        heard_position = await call.output.clear() if audible else call.output.played()
        await reply.wait()
        self._store(reply, heard_position)
        call.reply_interrupted()
        if action.hook and isinstance(call.agent, VoiceAgent):
            await maybe_await(call.agent.on_interrupt(call))

    # --- endings --------------------------------------------------------------------------------------------

    def _watch(self, reply_id: int, reply: Reply, token: int | None = None) -> None:
        self.replies[reply_id] = reply
        self._tasks.spawn(self._ended(reply_id, reply, token), name=f"reply-{reply_id}-end")

    async def _ended(self, reply_id: int, reply: Reply, token: int | None) -> None:
        try:
            await reply.wait()
            if not reply.cancelled.is_set():
                self._store(reply, None)
            self._observe(reply)
        finally:
            self.replies.pop(reply_id, None)
            if token is not None:
                self._speech_done(token)
            self._post(ReplyEnded(reply_id, time.monotonic()))

    def _store(self, reply: Reply, heard_position: int | None) -> None:
        """The one place a reply reaches history: what the user heard of it."""
        if not reply.save:
            return
        reply.save = False  # once
        result = reply.result(heard_position)
        meta = {"metrics": turn_metrics(reply)} if reply.fixed_text is None else None
        self.call.transcript.reply(result.heard, interrupted=result.interrupted, meta=meta)

    def _observe(self, reply: Reply) -> None:
        """An answered turn's latencies and trace span (not fixed text, nor a speculative reply that was dropped)."""
        if reply.fixed_text is not None or reply.held:
            return
        message = turn_metrics(reply)
        if reply.source == "voice":
            observability.turn_latencies(self.call, message)
        observability.turn_ended(self.call, reply.source, vars(reply.metrics), message, reply.cancelled.is_set())

    async def close(self) -> None:
        """The connection is gone: cancel every reply and release every speak waiter."""
        for reply in list(self.replies.values()):
            reply.cancel()
        await asyncio.gather(*(r.wait() for r in list(self.replies.values())), return_exceptions=True)
        await self._tasks.cancel_all()
        for token in list(self._speeches):
            self._speech_done(token)
