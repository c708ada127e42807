"""Deepgram Nova-3 streaming speech-to-text (``/v1/listen``) as a :class:`~voice.providers.base.Transcriber`.

Event mapping (see ``PROTOCOLS.md`` §3):

* ``SpeechStarted`` (needs ``vad_events``) → :class:`SpeechStarted` (drives barge-in).
* ``Results`` with ``is_final: false`` → :class:`Interim` = the finals accumulated in this utterance + the interim.
* ``Results`` with ``is_final: true`` → appended to the utterance; the utterance ends (→ :class:`Final`) on
  ``speech_final: true``, on ``from_finalize: true`` (our ``Finalize``), or on ``UtteranceEnd`` (which rescues
  utterances whose endpoint was missed, e.g. in noise). ``UtteranceEnd`` with ``last_word_end: -1`` is ignored.

Keep-alive: a ``KeepAlive`` text frame is sent after ``keepalive_interval`` seconds without audio (Deepgram closes
with 1011 after ~10 s of silence on the socket). :meth:`NovaSession.commit` sends ``Finalize``; ``close`` sends
``Finalize`` then ``CloseStream`` and waits briefly for the last results.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from ..base import Final, Interim, SpeechStarted, Transcriber, TranscriberOptions, TranscriberSession
from ._common import ClientHolder, DeepgramConfig, log
from .streaming import StreamingSession, StreamSettings, _Conn


class NovaTranscriber(Transcriber):
    """Deepgram Nova-3 over ``/v1/listen`` (linear16 at the session's sample rate, mono).

    Args:
        model: Deepgram model, default ``nova-3``.
        api_key: defaults to ``DEEPGRAM_API_KEY``. The SDK client is built on first use, so constructing this
            without a key is fine.
        base_url: defaults to ``DEEPGRAM_BASE_URL`` (else Deepgram's production endpoints).
        language: BCP-47 tag; default: the session's ``TranscriberOptions.language``.
        interim_results: stream interim hypotheses (needed for ``UtteranceEnd``).
        endpointing: ms of silence that ends an utterance (``speech_final``), or ``False`` to disable.
        utterance_end_ms: 1000–5000 ms gap after the last final word that ends an utterance, or ``None``.
        vad_events: emit ``SpeechStarted`` (barge-in). If False the engine uses its own VAD.
        smart_format, punctuate: Deepgram formatting options.
        keyterm: key terms to boost (Nova-3 only), sent as repeated ``keyterm`` parameters.
        keepalive_interval: seconds without audio before a ``KeepAlive`` is sent (``None`` disables).
        settings: further timeouts/limits (:class:`StreamSettings`).
    """

    def __init__(
        self,
        model: str = "nova-3",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        language: str | None = None,
        interim_results: bool = True,
        endpointing: int | bool = 300,
        utterance_end_ms: int | None = 1000,
        vad_events: bool = True,
        smart_format: bool = True,
        punctuate: bool = True,
        keyterm: Sequence[str] = (),
        keepalive_interval: float | None = 4.0,
        settings: StreamSettings | None = None,
    ) -> None:
        if utterance_end_ms is not None:
            if not interim_results:
                raise ValueError("utterance_end_ms requires interim_results=True")
            if not 1000 <= utterance_end_ms <= 5000:
                raise ValueError("utterance_end_ms must be between 1000 and 5000")
        if endpointing is True:
            raise ValueError("endpointing is a number of milliseconds or False")
        self.model = model
        self.language = language
        self.interim_results = interim_results
        self.endpointing = endpointing
        self.utterance_end_ms = utterance_end_ms
        self.vad_events = vad_events
        self.smart_format = smart_format
        self.punctuate = punctuate
        self.keyterm = list(keyterm)
        self.settings = dataclasses.replace(settings or StreamSettings(), keepalive_interval=keepalive_interval)
        self.emits_speech_start = vad_events
        self._holder = ClientHolder(DeepgramConfig(api_key, base_url))

    def query(self, options: TranscriberOptions) -> dict[str, Any]:
        """The keyword arguments given to the SDK's ``listen.v1.connect`` for a session."""
        return {
            "model": self.model,
            "encoding": "linear16",
            "sample_rate": options.sample_rate,
            "channels": 1,
            "interim_results": self.interim_results,
            "endpointing": self.endpointing,
            "utterance_end_ms": self.utterance_end_ms,
            "vad_events": self.vad_events,
            "smart_format": self.smart_format,
            "punctuate": self.punctuate,
            "language": self.language or options.language,
            "keyterm": self.keyterm or None,
        }

    async def create_session(self, options: TranscriberOptions) -> TranscriberSession:
        """A Nova-3 session for one call."""
        session = NovaSession(self._holder, options, self.settings, self.query(options))
        session.start()
        return session

    async def close(self) -> None:
        """Release the SDK client's HTTP pool."""
        await self._holder.aclose()


class NovaSession(StreamingSession):
    """One call on ``/v1/listen``: assembles Deepgram's results into utterances."""

    what = "Deepgram Nova-3 streaming"

    def __init__(
        self, holder: ClientHolder, options: TranscriberOptions, settings: StreamSettings, query: dict
    ) -> None:
        super().__init__(holder, options, settings)
        self._query = query
        self._finals: list[str] = []  # is_final transcripts of the utterance in progress
        self._last_interim = ""
        self._last_word_end: float | None = None  # wall-clock end of the utterance's last final word
        self._announced = False  # SpeechStarted already emitted for the utterance in progress

    def _open(self, client: Any) -> Any:
        return client.listen.v1.connect(**self._query)

    async def _send_control(self, conn: _Conn, name: str) -> None:
        if name == "keepalive":
            await conn.sock.send_keep_alive()
        elif name == "commit":
            await conn.sock.send_finalize()
        elif name == "close":
            await conn.sock.send_finalize()
            await conn.sock.send_close_stream()

    # --- server messages ------------------------------------------------------------------------------------

    def _handle(self, msg: dict, conn: _Conn) -> None:
        kind = msg.get("type")
        if kind == "Results":
            self._on_results(msg, conn)
        elif kind == "SpeechStarted":
            stamp = float(msg.get("timestamp") or 0.0)
            if self._announced and self._abs(conn, stamp) < conn.replay_end:
                return  # replayed audio after a reconnect: this speech was already announced
            self._announced = True
            self._emit(SpeechStarted(at=self._wall_time(conn, stamp) or time.monotonic()))
        elif kind == "UtteranceEnd":
            last = msg.get("last_word_end")
            if last is not None and float(last) < 0:
                return  # already finalized before the condition was met
            if self._finals:  # nothing finalized yet: an utterance in progress must not be cut or cleared
                self._end_utterance()
        elif kind == "Error":
            log.warning("%s: server error %s: %s", self.what, msg.get("variant"), str(msg.get("description"))[:200])

    def _on_results(self, msg: dict, conn: _Conn) -> None:
        alternatives = (msg.get("channel") or {}).get("alternatives") or [{}]
        best = alternatives[0] or {}
        text = (best.get("transcript") or "").strip()
        if not msg.get("is_final"):
            if text:
                conn.useful = True
            self._set_interim(" ".join([*self._finals, text]).strip())
            return
        conn.useful = True
        if text:
            self._finals.append(text)
            words = best.get("words") or []
            end = (
                float(words[-1].get("end", 0.0))
                if words
                else float(msg.get("start", 0.0)) + float(msg.get("duration", 0.0))
            )
            self._last_word_end = self._wall_time(conn, end)
        window_end = float(msg.get("start") or 0.0) + float(msg.get("duration") or 0.0)
        self._cover(conn, window_end)
        if msg.get("speech_final") or msg.get("from_finalize"):
            self._end_utterance()
        else:
            joined = " ".join(self._finals)
            if not self._last_interim.startswith(joined):  # don't flicker back to a shorter text
                self._set_interim(joined)

    def _set_interim(self, text: str) -> None:
        if text != self._last_interim:
            self._last_interim = text
            self._emit(Interim(text))

    def _end_utterance(self) -> None:
        text = " ".join(self._finals).strip()
        ended_at = self._last_word_end
        self._finals.clear()
        self._last_word_end = None
        self._announced = False
        if text:
            self._last_interim = ""
            self._emit(Final(text, speech_ended_at=ended_at))
        else:
            self._set_interim("")
