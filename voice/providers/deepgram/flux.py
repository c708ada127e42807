"""Deepgram Flux conversational speech-to-text (``/v2/listen``, ``flux-general-en``) as a
:class:`~voice.providers.base.Transcriber`.

Flux does turn detection itself; its ``TurnInfo`` events map onto the engine's events (``PROTOCOLS.md`` §4):

* ``StartOfTurn`` → :class:`SpeechStarted` (barge-in; Flux guarantees a non-empty transcript) + :class:`Interim`.
* ``Update`` → :class:`Interim` (transcripts are cumulative for the turn: they replace, never append).
* ``EndOfTurn`` → :class:`Final`. An empty ``EndOfTurn`` transcript falls back to the eager text, then to the
  last interim.
* With ``eager_eot_threshold`` set (beyond @cloudflare/voice): ``EagerEndOfTurn`` → :class:`EagerFinal` (the
  engine may start the turn speculatively, without speaking), ``TurnResumed`` → :class:`TurnResumed` (void it),
  ``EndOfTurn`` → :class:`Final` (commit, with the same or a changed text).

Flux has no KeepAlive and only advances on received audio, so when no audio is fed the session sends silence:
0.5 s at a time while a turn is open (so ``EndOfTurn`` can still come), and a little every
``keepalive_interval`` seconds otherwise. Audio is sent in 80 ms messages, as Deepgram recommends.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from ..base import (
    EagerFinal,
    Final,
    Interim,
    SpeechStarted,
    Transcriber,
    TranscriberOptions,
    TranscriberSession,
    TurnResumed,
)
from ._common import ClientHolder, DeepgramConfig, DeepgramError, log
from .streaming import StreamingSession, StreamSettings, _Conn

#: seconds of silence sent per idle tick while a turn is open (pipecat's watchdog does the same)
TURN_SILENCE_S = 0.5
#: seconds of silence sent as a keep-alive when idle outside a turn
KEEPALIVE_SILENCE_S = 0.1


class FluxTranscriber(Transcriber):
    """Deepgram Flux over ``/v2/listen`` (linear16 at the session's sample rate, 16 kHz recommended).

    Args:
        model: ``flux-general-en`` (or ``flux-general-multi``).
        api_key: defaults to ``DEEPGRAM_API_KEY``; the SDK client is only built when a session starts.
        base_url: defaults to ``DEEPGRAM_BASE_URL`` (else Deepgram's production endpoints).
        eot_threshold: end-of-turn confidence, 0.5–1.0 (server default 0.7).
        eager_eot_threshold: 0.3–0.9 and ≤ ``eot_threshold``; setting it enables :class:`EagerFinal` /
            :class:`TurnResumed` events (speculative turns).
        eot_timeout_ms: force the end of turn after this much silence, 500–60000 ms (server default 5000).
        keyterm: key terms to boost, sent as repeated ``keyterm`` parameters.
        keepalive_interval: idle seconds outside a turn before a little silence is sent (``None`` disables).
        settings: further timeouts/limits (:class:`StreamSettings`).
    """

    def __init__(
        self,
        model: str = "flux-general-en",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        eot_threshold: float | None = None,
        eager_eot_threshold: float | None = None,
        eot_timeout_ms: int | None = None,
        keyterm: Sequence[str] = (),
        keepalive_interval: float | None = 4.0,
        settings: StreamSettings | None = None,
    ) -> None:
        if eot_threshold is not None and not 0.5 <= eot_threshold <= 1.0:
            raise ValueError("eot_threshold must be between 0.5 and 1.0")
        if eager_eot_threshold is not None:
            if not 0.3 <= eager_eot_threshold <= 0.9:
                raise ValueError("eager_eot_threshold must be between 0.3 and 0.9")
            if eager_eot_threshold > (eot_threshold if eot_threshold is not None else 0.7):
                raise ValueError("eager_eot_threshold must not exceed eot_threshold")
        if eot_timeout_ms is not None and not 500 <= eot_timeout_ms <= 60_000:
            raise ValueError("eot_timeout_ms must be between 500 and 60000")
        self.model = model
        self.eot_threshold = eot_threshold
        self.eager_eot_threshold = eager_eot_threshold
        self.eot_timeout_ms = eot_timeout_ms
        self.keyterm = list(keyterm)
        base = settings or StreamSettings(chunk_ms=80, max_chunk_ms=80, stall_timeout=10.0)
        self.settings = dataclasses.replace(base, keepalive_interval=keepalive_interval)
        self._holder = ClientHolder(DeepgramConfig(api_key, base_url))

    @property
    def eager(self) -> bool:
        """Whether sessions emit :class:`EagerFinal`/:class:`TurnResumed`."""
        return self.eager_eot_threshold is not None

    def query(self, options: TranscriberOptions) -> dict[str, Any]:
        """The keyword arguments given to the SDK's ``listen.v2.connect`` for a session."""
        return {
            "model": self.model,
            "encoding": "linear16",
            "sample_rate": options.sample_rate,
            "eot_threshold": self.eot_threshold,
            "eager_eot_threshold": self.eager_eot_threshold,
            "eot_timeout_ms": self.eot_timeout_ms,
            "keyterm": self.keyterm or None,
        }

    async def create_session(self, options: TranscriberOptions) -> TranscriberSession:
        """A Flux session for one call."""
        session = FluxSession(self._holder, options, self.settings, self.query(options))
        session.start()
        return session

    async def close(self) -> None:
        """Release the SDK client's HTTP pool."""
        await self._holder.aclose()


class FluxSession(StreamingSession):
    """One call on ``/v2/listen``: follows Flux's turn state machine.

    States: idle → (StartOfTurn) in turn → (EagerEndOfTurn) awaiting end → (TurnResumed) in turn … →
    (EndOfTurn) idle. After a reconnect the audio of the open turn is replayed from the turn's start, so the new
    connection re-transcribes the whole turn; a pending speculative turn is voided (:class:`TurnResumed`).
    """

    what = "Deepgram Flux streaming"
    ready_on_open = False  # wait for Connected before streaming

    def __init__(
        self, holder: ClientHolder, options: TranscriberOptions, settings: StreamSettings, query: dict
    ) -> None:
        super().__init__(holder, options, settings)
        self._query = query
        self._in_turn = False
        self._last_interim = ""
        self._eager: str | None = None  # text of the pending speculative turn
        self._replaying = False  # re-transcribing the open turn after a reconnect

    def _open(self, client: Any) -> Any:
        return client.listen.v2.connect(**self._query)

    async def _send_control(self, conn: _Conn, name: str) -> None:
        if name == "commit":
            force = getattr(conn.sock, "send_force_end_turn", None)  # SDK ≥ 7.7
            if force is not None:
                await force()
        elif name == "close":
            await conn.sock.send_close_stream()

    async def _on_idle(self, conn: _Conn, idle: float) -> None:
        if self._in_turn and idle >= TURN_SILENCE_S:
            self._feed_silence(TURN_SILENCE_S)
        elif self._s.keepalive_interval is not None and idle >= self._s.keepalive_interval:
            self._feed_silence(KEEPALIVE_SILENCE_S)

    def _feed_silence(self, seconds: float) -> None:
        n = int(self._bps * seconds)
        self._buf.feed(bytes(n - n % 2), time.monotonic())
        self._wake.set()

    def _on_connection_lost(self) -> None:
        self._replaying = self._in_turn
        if self._eager is not None:
            self._eager = None
            self._emit(TurnResumed())

    async def close(self) -> None:
        """CloseStream; Flux does not finalize an open turn, so its latest transcript becomes the :class:`Final`."""
        await super().close()
        if self._in_turn and not self._dead:
            text = self._last_interim or self._eager
            self._in_turn, self._eager, self._last_interim = False, None, ""
            if text:
                self._emit(Final(text))

    # --- server messages ------------------------------------------------------------------------------------

    def _handle(self, msg: dict, conn: _Conn) -> None:
        kind = msg.get("type")
        if kind == "Connected":
            self._mark_ready(conn)
        elif kind == "TurnInfo":
            self._on_turn_info(msg, conn)
        elif kind == "Error":
            detail = str(msg.get("description") or msg.get("error") or "")[:200]
            raise DeepgramError(f"server error {msg.get('code') or ''}: {detail}".strip())
        elif kind == "ConfigureFailure":
            log.warning("%s: Configure rejected", self.what)

    def _on_turn_info(self, msg: dict, conn: _Conn) -> None:
        event = msg.get("event")
        text = (msg.get("transcript") or "").strip()
        if text:
            conn.useful = True
        if event == "StartOfTurn":
            if not self._in_turn:  # after a reconnect the replayed turn starts again: already announced
                self._in_turn = True
                self._emit(SpeechStarted(at=self._word_time(msg, conn, 0) or time.monotonic()))
            self._set_interim(text)
        elif event == "Update":
            if not self._in_turn and not text:
                # no speech up to here (minus a margin for a word being detected): nothing to replay
                self._cover(conn, float(msg.get("audio_window_end") or 0.0) - 1.0)
            self._set_interim(text)
        elif event == "EagerEndOfTurn":
            eager = text or self._last_interim
            if eager:
                self._eager = eager
                self._emit(EagerFinal(eager))
        elif event == "TurnResumed":
            if self._eager is not None:
                self._eager = None
                self._emit(TurnResumed())
            self._set_interim(text)
        elif event == "EndOfTurn":
            final = text or self._eager or self._last_interim
            self._cover(conn, float(msg.get("audio_window_end") or 0.0))
            ended = self._word_time(msg, conn, -1)
            self._in_turn, self._eager, self._last_interim, self._replaying = False, None, "", False
            if final:
                self._emit(Final(final, speech_ended_at=ended))

    def _set_interim(self, text: str) -> None:
        if self._replaying and self._last_interim.startswith(text):
            return  # the replayed turn catching up with what was already shown
        self._replaying = False
        if text and text != self._last_interim:
            self._last_interim = text
            self._emit(Interim(text))

    def _word_time(self, msg: dict, conn: _Conn, index: int) -> float | None:
        words = msg.get("words") or []
        try:
            word = words[index]
            stamp = word.get("start") if index == 0 else word.get("end")
        except (IndexError, AttributeError):
            return None
        return self._wall_time(conn, float(stamp)) if stamp is not None else None
