"""The agents a server runs: live instances (created on first use, forgotten when unused), the calls on them, the
default providers, and the store, bus and scheduler behind their history.

The runtime is the :class:`~voice.agent.AgentHost` of every instance it creates. Several runtimes (processes) may
share one store: its bus carries what they must tell each other — "speak stored message N on instance X"
(``speak_all``) and "a schedule was added" (wakes their schedulers) — as small notices of ids, never text.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from .._aio import TaskSet, maybe_await
from ..agent import BaseAgent, VoiceAgent
from ..config import Settings
from ..history import Bus, Schedule, Scheduler, Store, Transcript, open_store
from ..providers.base import Transcriber, TTSProvider
from ..providers.factory import make_transcriber, make_tts
from ..providers.turn import TextTurnDetector, TurnDetector
from .call import Call

log = logging.getLogger("voice")

TRIM_EVERY_SECONDS = 300.0
#: bus channels: a stored message to speak on every call of an instance, and a schedule added
SPEAK_CHANNEL = "voice_speak"
SCHEDULE_CHANNEL = "voice_schedule"
#: how often a scheduler looks for schedules added elsewhere: with one process's store that is the only way; a
#: shared store's bus wakes it at once, and the look is a safety net for notices lost while the bus reconnected
POLL_SECONDS = 1.0
SHARED_POLL_SECONDS = 5.0


def kebab_case(name: str) -> str:
    """The agent path segment the official client uses: ``MyVoiceAgent`` → ``my-voice-agent``."""
    if name == name.upper() and name != name.lower():
        return name.lower().replace("_", "-")
    out = re.sub(r"[A-Z]", lambda m: "-" + m.group(0).lower(), name).lstrip("-")
    return out.replace("_", "-").rstrip("-")


class Runtime:
    """Instances of the registered agent classes, keyed by (agent name, instance id), with use counts."""

    def __init__(
        self,
        agents: dict[str, type[BaseAgent]],
        settings: Settings,
        *,
        transcriber: Transcriber | None = None,
        tts: TTSProvider | None = None,
        store: Store | None = None,
        bus: Bus | None = None,
        turn_detector: TurnDetector | None = None,
    ) -> None:
        for name, cls in agents.items():
            if not (isinstance(cls, type) and issubclass(cls, BaseAgent)):
                raise TypeError(f"agent {name!r} must be a VoiceAgent or VoiceInputAgent subclass")
            if issubclass(cls, VoiceAgent) and cls.on_turn is VoiceAgent.on_turn:
                raise TypeError(f"{cls.__name__} must override on_turn(transcript, ctx)")
        self.agents = dict(agents)
        self._aliases = {kebab_case(n): n for n in agents} | {n: n for n in agents}
        self.settings = settings
        self._transcriber = transcriber
        self._tts = tts
        self._turn_detector = turn_detector or TextTurnDetector()
        self.store: Store = store or open_store(settings)
        #: reaches every process sharing the store (this one only, for a store of one process)
        self.bus: Bus = bus or self.store.bus()
        #: this runtime's name on the bus (its own notices come back to it; it has acted on them already)
        self.node = uuid.uuid4().hex[:12]
        self.scheduler = Scheduler(
            self.store, self._fire, poll=SHARED_POLL_SECONDS if self.store.shared else POLL_SECONDS,
            max_attempts=settings.schedule_attempts, retry_delay=settings.schedule_retry_seconds,
        )
        self._instances: dict[tuple[str, str], tuple[BaseAgent, int]] = {}
        self._lock = asyncio.Lock()
        self._tasks = TaskSet("runtime")
        self._stop_hooks: list[Callable[[], Awaitable[None]]] = []

    def resolve(self, name: str) -> str | None:
        """The registered agent name for a path segment (its own name or the kebab-case form), or None."""
        return self._aliases.get(name)

    # --- AgentHost ------------------------------------------------------------------------------------------

    def default_transcriber(self) -> Transcriber:
        """The server's speech-to-text (built on first use)."""
        if self._transcriber is None:
            self._transcriber = make_transcriber()
        return self._transcriber

    def default_tts(self) -> TTSProvider:
        """The server's text-to-speech (built on first use)."""
        if self._tts is None:
            self._tts = make_tts()
        return self._tts

    def default_turn_detector(self) -> TurnDetector | None:
        """The server's end-of-turn detector."""
        return self._turn_detector

    async def schedule(self, agent: str, instance: str, delay: float, method: str, payload: Any) -> str:
        """Store a durable schedule, and wake the schedulers of the other processes."""
        schedule_id = await self.scheduler.add(agent, instance, delay, method, payload)
        await self._notify(SCHEDULE_CHANNEL, {"schedule": schedule_id})
        return schedule_id

    async def cancel_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule that has not run."""
        return await self.scheduler.cancel(schedule_id)

    async def speak_all(self, agent: BaseAgent, text: str) -> None:
        """Store ``text`` once, tell the other processes its id, and say it on every call of the instance here
        (returns when it has been heard here). Other processes say it on their calls of the instance."""
        try:
            stored = await agent._transcript.add("assistant", text)
        except Exception:  # noqa: BLE001 - the store failed (the transcript logged it): the calls here still hear it
            await self._speak_here(agent, text)
            return
        notice = {"agent": agent.name, "instance": agent.instance_id, "message_id": stored.id}
        await self._notify(SPEAK_CHANNEL, notice)
        await self._speak_here(agent, text)

    async def _speak_here(self, agent: BaseAgent, text: str) -> None:
        calls = [c for c in agent._calls if isinstance(c, Call) and c.in_call]
        await asyncio.gather(*(c.speak(text, save=False) for c in calls))

    # --- notices from the other processes ------------------------------------------------------------------

    async def _notify(self, channel: str, payload: dict[str, Any]) -> None:
        """Publish on the bus; a bus that cannot reach the others is logged, not raised (the store has the truth)."""
        try:
            await self.bus.publish(channel, payload | {"origin": self.node})
        except (ConnectionError, ValueError) as exc:
            log.warning("could not tell the other processes (%s %s): %s", channel, payload, exc)

    async def _on_speak(self, notice: dict[str, Any]) -> None:
        """Another process spoke a stored message to an instance: say it on our calls of that instance."""
        if notice.get("origin") == self.node:
            return
        name, instance_id, message_id = notice.get("agent"), notice.get("instance"), notice.get("message_id")
        if not (isinstance(name, str) and isinstance(instance_id, str) and isinstance(message_id, int)):
            log.warning("ignored a malformed speak notice: %.200s", notice)
            return
        agent = self.instance(name, instance_id)
        if agent is None or not any(isinstance(c, Call) and c.in_call for c in agent._calls):
            return
        message = await self.store.message(agent.name, instance_id, message_id)
        if message is not None:
            await self._speak_here(agent, message.content)

    def _on_schedule(self, notice: dict[str, Any]) -> None:
        """Another process added a schedule: look at the store now rather than at the next poll."""
        if notice.get("origin") != self.node:
            self.scheduler.wake()

    # --- life -----------------------------------------------------------------------------------------------

    async def start(self, warm_up: bool = True) -> None:
        """Open the store and the bus, warm the providers up, start firing schedules and trimming history."""
        await self.store.start()
        await self.bus.start()
        await self.bus.subscribe(SPEAK_CHANNEL, self._on_speak)
        await self.bus.subscribe(SCHEDULE_CHANNEL, self._on_schedule)
        if warm_up:
            needs_tts = any(issubclass(c, VoiceAgent) for c in self.agents.values())
            providers: list[Transcriber | TTSProvider] = [self.default_transcriber()]
            if needs_tts:
                providers.append(self.default_tts())
            await asyncio.gather(*(p.warm_up() for p in providers))
        await self.scheduler.start()
        if self.settings.max_messages_per_instance > 0:
            self._tasks.spawn(self._trim_history(), name="voice-trim")

    def on_stop(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` first when the runtime stops (e.g. close a transport's connections)."""
        self._stop_hooks.append(hook)

    async def stop(self) -> None:
        """Run the stop hooks, stop schedules, close the bus, providers and the store."""
        for hook in self._stop_hooks:
            await hook()
        await self._tasks.cancel_all()
        await self.scheduler.stop()
        await self.bus.close()
        if self._tts is not None:
            await self._tts.close()
        await self.store.close()

    async def _trim_history(self) -> None:
        """Retention on a timer (not per insert): keep the newest ``max_messages_per_instance`` per instance."""
        while True:
            try:
                removed = await self.store.trim(self.settings.max_messages_per_instance)
                if removed:
                    log.info("history retention: removed %d old messages", removed)
            except Exception:
                log.exception("history retention failed")
            await asyncio.sleep(TRIM_EVERY_SECONDS)

    # --- instances ------------------------------------------------------------------------------------------

    async def acquire(self, name: str, instance_id: str) -> BaseAgent | None:
        """The live instance (created and its history loaded on first use), or None for an unknown agent."""
        key = self.resolve(name)
        if key is None:
            return None
        async with self._lock:
            entry = self._instances.get((key, instance_id))
            if entry is None:
                cls = self.agents[key]
                agent = cls()
                keep = max(self.settings.history_cache, self.settings.history_limit, cls.history_limit or 0)
                agent._bind(self, key, instance_id, await Transcript.load(self.store, key, instance_id, keep))
                entry = (agent, 0)
            self._instances[(key, instance_id)] = (entry[0], entry[1] + 1)
            return entry[0]

    def release(self, agent: BaseAgent) -> None:
        """Drop one use; the instance is forgotten (its history stays stored) when nothing uses it."""
        key = (agent.name, agent.instance_id)
        entry = self._instances.get(key)
        if entry is None:
            return
        if entry[1] <= 1:
            del self._instances[key]
        else:
            self._instances[key] = (entry[0], entry[1] - 1)

    def instance(self, name: str, instance_id: str) -> BaseAgent | None:
        """The live instance, if something uses it now."""
        key = self.resolve(name)
        entry = self._instances.get((key, instance_id)) if key is not None else None
        return entry[0] if entry is not None else None

    def live_calls(self) -> list[Call]:
        """Every open connection, in a call or not."""
        return [call for agent, _ in self._instances.values() for call in agent._calls if isinstance(call, Call)]

    async def _fire(self, item: Schedule) -> None:
        """Run one due schedule on its instance (the scheduler retries it if this raises)."""
        agent = await self.acquire(item.agent, item.instance)
        if agent is None:
            log.warning("schedule %s: agent %r no longer exists; dropped", item.id, item.agent)
            return
        try:
            await maybe_await(getattr(agent, item.method)(item.payload))
        finally:
            self.release(agent)
