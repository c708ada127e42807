"""The process-wide state behind a server: agent classes, live agent instances, storage, schedules, providers."""

from __future__ import annotations

import asyncio
import logging
import re

from .agent import BaseAgent, VoiceAgent
from .config import Settings
from .providers.base import Transcriber, TTSProvider
from .providers.factory import make_transcriber, make_tts
from .schedule import Scheduler
from .storage import Store

log = logging.getLogger("voice")


def kebab_case(name: str) -> str:
    """The agent path segment the official client uses: ``MyVoiceAgent`` → ``my-voice-agent``."""
    if name == name.upper() and name != name.lower():
        return name.lower().replace("_", "-")
    out = re.sub(r"[A-Z]", lambda m: "-" + m.group(0).lower(), name).lstrip("-")
    return out.replace("_", "-").rstrip("-")


class Runtime:
    """Owns agent instances keyed by (agent name, instance id); an instance lives while something uses it."""

    def __init__(
        self,
        agents: dict[str, type[BaseAgent]],
        settings: Settings,
        transcriber: Transcriber | None = None,
        tts: TTSProvider | None = None,
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
        self.store: Store | None = None  # type: ignore[assignment]
        self.scheduler = Scheduler(self)
        self._instances: dict[tuple[str, str], tuple[BaseAgent, int]] = {}
        self._lock = asyncio.Lock()

    def resolve(self, name: str) -> str | None:
        """The registered agent name for a path segment (its own name or the kebab-case form), or None."""
        return self._aliases.get(name)

    def default_transcriber(self) -> Transcriber:
        if self._transcriber is None:
            self._transcriber = make_transcriber()
        return self._transcriber

    def default_tts(self) -> TTSProvider:
        if self._tts is None:
            self._tts = make_tts()
        return self._tts

    async def start(self, warm_up: bool = True) -> None:
        self.store = Store(self.settings.db_path, self.settings.max_messages_per_instance)
        if warm_up:
            needs_tts = any(issubclass(c, VoiceAgent) for c in self.agents.values())
            providers = [self.default_transcriber()] + ([self.default_tts()] if needs_tts else [])
            await asyncio.gather(*(p.warm_up() for p in providers))
        await self.scheduler.start()

    async def stop(self) -> None:
        await self.scheduler.stop()
        for provider in (self._tts,):
            if provider is not None:
                await provider.close()
        if self.store is not None:
            self.store.close()

    async def acquire(self, name: str, instance_id: str) -> BaseAgent | None:
        """The live instance (created and its history loaded on first use), or None for an unknown agent."""
        key = self.resolve(name)
        if key is None:
            return None
        async with self._lock:
            entry = self._instances.get((key, instance_id))
            if entry is None:
                agent = self.agents[key]()
                keep = max(self.settings.history_cache, self.settings.history_limit, self.agents[key].history_limit or 0)
                history = await self.store.messages(key, instance_id, keep)
                agent._bind(self, key, instance_id, history)
                entry = (agent, 0)
            self._instances[(key, instance_id)] = (entry[0], entry[1] + 1)
            return entry[0]

    def live_calls(self) -> list:
        """Every open connection, in a call or not."""
        return [call for agent, _ in self._instances.values() for call in agent._calls]

    def release(self, agent: BaseAgent) -> None:
        """Drop one use; the instance is forgotten (its history stays in SQLite) when nothing uses it."""
        key = (agent.name, agent.instance_id)
        entry = self._instances.get(key)
        if entry is None:
            return
        if entry[1] <= 1:
            del self._instances[key]
        else:
            self._instances[key] = (entry[0], entry[1] - 1)
