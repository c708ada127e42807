"""A local OpenAI-compatible Chat Completions server for tests: real HTTP on loopback (uvicorn), the wire format of
PROTOCOLS.md §9, scripted per test.

``POST /v1/chat/completions`` plays the next queued :class:`Reply`: streamed ``chat.completion.chunk`` events
(``data: <json>\\n\\n``, one ``id``/``created`` per stream, a role chunk, content deltas, tool-call fragments split
anywhere, ``finish_reason`` in its own chunk with ``delta: {}``, ``data: [DONE]``), or an error status with the
``{"error": {message, type, param, code}}`` body and headers such as ``retry-after``; or it breaks the stream (a
clean end without ``[DONE]``, an aborted connection, an error event), or stalls. Requests are validated as OpenAI
does (a ``tool_calls`` id without a ``tool`` answer is a 400) and every one is recorded with its headers, body,
timing and whether the client hung up before the reply was over.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from tests.harness import LiveServer

Step = tuple  # ("chunk", delta, finish_reason) | ("sleep", s) | ("raw", str) | ("done",) | ("abort",) | ("status", …)


@dataclass
class Reply:
    """One scripted response: the steps played in order."""

    steps: list[Step]
    label: str = ""


@dataclass
class Recorded:
    """One request as the server saw it, and what became of its response."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float
    label: str = ""
    status: int | None = None
    chunks_sent: int = 0
    sent_at: list[float] = field(default_factory=list)  # when each data event was written
    finished: bool = False  # the whole scripted response was written
    disconnected_at: float | None = None  # the client hung up before that

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])


class ScriptedAbort(Exception):
    """Raised inside the app to make uvicorn drop the connection mid-response."""


# --- replies ------------------------------------------------------------------------------------------------------


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _words(text: str) -> list[str]:
    """``text`` in pieces that keep their spaces: "It is. Fine" → ["It ", "is. ", "Fine"]."""
    out: list[str] = []
    for word in text.split(" "):
        if out:
            out[-1] += " "
        out.append(word)
    return [w for w in out if w]


def text_steps(text: str, delay: float = 0.0) -> list[Step]:
    """Content deltas word by word, ``delay`` seconds apart."""
    steps: list[Step] = []
    for word in _words(text):
        if delay:
            steps.append(("sleep", delay))
        steps.append(("chunk", {"content": word}, None))
    return steps


def text_reply(text: str, *, delay: float = 0.0, first_delay: float = 0.0, usage: bool = True) -> Reply:
    """A normal answer: role chunk (``content: ""``), the words, ``finish_reason: "stop"``, usage, ``[DONE]``."""
    steps: list[Step] = [("chunk", {"role": "assistant", "content": "", "refusal": None}, None)]
    if first_delay:
        steps.append(("sleep", first_delay))
    steps += text_steps(text, delay)
    steps += [("chunk", {}, "stop"), *([("usage",)] if usage else []), ("done",)]
    return Reply(steps, f"text {text[:30]!r}")


def tool_call(name: str, arguments: dict[str, Any] | str, call_id: str | None = None) -> dict[str, Any]:
    """A call for :func:`tool_reply`; ``arguments`` as a dict (sent as JSON) or raw text (e.g. broken JSON)."""
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {"id": call_id or f"call_{uuid.uuid4().hex[:24]}", "name": name, "arguments": raw}


def tool_reply(
    *calls: dict[str, Any], text: str = "", delay: float = 0.0, piece: int = 3, whole: bool = False
) -> Reply:
    """Text first (if any), then each call as OpenAI streams it: a first fragment with ``id``, ``type``, ``name``
    and ``arguments: ""``, then the arguments in ``piece``-character fragments (split inside strings and escapes);
    calls one after another by ``index``; ``finish_reason: "tool_calls"``. ``whole=True``: each call complete in
    one fragment, all at ``index`` 0 (older Ollama)."""
    steps: list[Step] = [("chunk", {"role": "assistant", "content": "" if text else None}, None)]
    steps += text_steps(text, delay)
    for index, call in enumerate(calls):
        if delay:
            steps.append(("sleep", delay))
        head = {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": ""}}
        if whole:
            head["function"]["arguments"] = call["arguments"]
            steps.append(("chunk", {"tool_calls": [{"index": 0, **head}]}, None))
            continue
        steps.append(("chunk", {"tool_calls": [{"index": index, **head}]}, None))
        for part in _pieces(call["arguments"], piece):
            steps.append(("chunk", {"tool_calls": [{"index": index, "function": {"arguments": part}}]}, None))
    steps += [("chunk", {}, "tool_calls"), ("usage",), ("done",)]
    return Reply(steps, f"tools {[c['name'] for c in calls]}")


def error_reply(
    status: int,
    message: str,
    *,
    kind: str = "invalid_request_error",
    code: str | int | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """An HTTP error with OpenAI's body: ``{"error": {"message", "type": kind, "param", "code"}}``."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Reply([("status", status, headers or {}, body)], f"error {status}")


def rate_limited(retry_after: str = "1") -> Reply:
    """429 with ``retry-after`` and the ``x-ratelimit-*`` headers."""
    headers = {
        "retry-after": retry_after,
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": f"{retry_after}s",
    }
    return error_reply(429, "Rate limit reached for requests", kind="requests", code="rate_limit_exceeded",
                       headers=headers)


def cut_reply(text: str, *, abort: bool, delay: float = 0.0) -> Reply:
    """``text`` streamed, then no ``finish_reason`` and no ``[DONE]``: the body ends cleanly (``abort=False``) or
    the connection is dropped in the middle of the chunked body (``abort=True``)."""
    steps: list[Step] = [("chunk", {"role": "assistant", "content": ""}, None), *text_steps(text, delay)]
    steps.append(("abort",) if abort else ("end",))
    return Reply(steps, f"cut {'abort' if abort else 'eof'}")


def stream_error_reply(text: str, message: str = "The server had an error while processing your request.") -> Reply:
    """``text``, then ``data: {"error": {...}}`` and the end of the body (llama.cpp/LiteLLM style)."""
    error = {"error": {"message": message, "type": "server_error", "param": None, "code": "server_error"}}
    steps: list[Step] = [("chunk", {"role": "assistant", "content": ""}, None), *text_steps(text)]
    steps += [("raw", json.dumps(error)), ("end",)]
    return Reply(steps, "error event")


def stall_reply(seconds: float, *, before_headers: bool) -> Reply:
    """Say nothing for ``seconds``: before the response headers, or after the headers and the role chunk."""
    if before_headers:
        return Reply([("sleep", seconds), ("status", 500, {}, {"error": {"message": "late", "type": "server_error",
                                                                      "param": None, "code": None}})], "stall")
    return Reply([("chunk", {"role": "assistant", "content": ""}, None), ("sleep", seconds), ("end",)], "stall")


# --- request validation -------------------------------------------------------------------------------------------


def validate(body: Any) -> str | None:
    """What OpenAI would refuse in this request (None: nothing)."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("system", "developer", "user", "assistant", "tool"):
            return f"messages[{i}].role is invalid: {role!r}"
        if role == "assistant" and m.get("content") is None and not m.get("tool_calls"):
            return f"messages[{i}]: an assistant message needs content or tool_calls"
        if role != "assistant" and not isinstance(m.get("content"), str):
            return f"messages[{i}].content must be a string"
        if role == "tool" and not m.get("tool_call_id"):
            return f"messages[{i}]: a tool message needs tool_call_id"
    unanswered: list[str] = []
    for i, m in enumerate(messages):
        if m["role"] == "assistant" and m.get("tool_calls"):
            answered = set()
            for later in messages[i + 1 :]:
                if later["role"] != "tool":
                    break
                answered.add(later["tool_call_id"])
            unanswered += [c["id"] for c in m["tool_calls"] if c["id"] not in answered]
        if m["role"] == "tool":
            previous = [p for p in messages[:i] if p["role"] != "tool"]
            calls = previous[-1].get("tool_calls") or [] if previous else []
            if m["tool_call_id"] not in {c["id"] for c in calls}:
                return "messages with role 'tool' must be a response to a preceeding message with 'tool_calls'."
    if unanswered:
        return ("An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(unanswered)}")
    for t in body.get("tools") or []:
        if t.get("type") != "function" or not isinstance(t.get("function", {}).get("name"), str):
            return "tools must be function tools with a name"
    return None


# --- the server ---------------------------------------------------------------------------------------------------


class FakeOpenAI:
    """The server. ``queue(reply, ...)`` scripts the next responses (one per request, retries included);
    ``requests`` lists what arrived. With nothing queued it answers 500, or ``default(body)`` if set."""

    def __init__(self, default: Callable[[dict[str, Any]], Reply] | None = None) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[Recorded] = []
        self.default = default
        self._arrived = asyncio.Condition()
        self._server = LiveServer(self)

    @property
    def url(self) -> str:
        """The base URL to give the client (``…/v1``)."""
        return f"{self._server.http}/v1"

    def queue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def __aenter__(self) -> Self:
        await self._server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.stop()

    async def wait_requests(self, n: int, timeout: float = 10.0) -> list[Recorded]:
        """Until ``n`` requests have arrived."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.requests) >= n), timeout)
        return self.requests

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """The ASGI app."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if scope["method"] == "GET" and scope["path"] == "/v1/models":
            models = {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0,
                                                  "owned_by": "tests"}]}
            await _respond(send, 200, {}, models)
            return
        try:
            body = json.loads(raw or b"null")
        except json.JSONDecodeError:
            body = None
        record = Recorded(scope["path"], headers, body if isinstance(body, dict) else {}, time.monotonic())
        async with self._arrived:
            self.requests.append(record)
            self._arrived.notify_all()
        if scope["method"] != "POST" or scope["path"] != "/v1/chat/completions":
            record.status = 404
            await _respond(send, 404, {}, _error_body(f"Unknown request URL: {scope['method']} {scope['path']}",
                                                      "invalid_request_error", "unknown_url"))
            return
        problem = validate(body)
        if problem:
            record.status = 400
            await _respond(send, 400, {}, _error_body(problem, "invalid_request_error", None))
            return
        reply = self.replies.popleft() if self.replies else self.default(body) if self.default else None
        if reply is None:
            record.status = 500
            await _respond(send, 500, {}, _error_body("no scripted reply left", "server_error", None))
            return
        record.label = reply.label
        await _Player(record, body, receive, send).play(reply)


class _Player:
    def __init__(self, record: Recorded, body: dict[str, Any], receive: Callable, send: Callable) -> None:
        self.record = record
        self.send = send
        self.receive = receive
        self.model = body["model"]
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.started = False
        self.gone = asyncio.Event()

    async def _watch(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass
        if not self.record.finished:
            self.record.disconnected_at = time.monotonic()
            self.gone.set()

    async def play(self, reply: Reply) -> None:
        watcher = asyncio.create_task(self._watch())
        try:
            await self._play(reply.steps)
        finally:
            watcher.cancel()

    async def _play(self, steps: list[Step]) -> None:
        for n, step in enumerate(steps):
            if self.gone.is_set():
                return  # the client hung up: stop generating
            kind = step[0]
            last = n == len(steps) - 1
            if kind == "sleep":
                try:
                    await asyncio.wait_for(self.gone.wait(), step[1])
                except TimeoutError:
                    pass
            elif kind == "status":
                _, status, headers, body = step
                self.record.status = status
                self.record.finished = True
                await _respond(self.send, status, headers, body)
                return
            elif kind == "chunk":
                _, delta, finish = step
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                await self._event(json.dumps(self._envelope([choice])), last)
            elif kind == "usage":
                usage = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
                await self._event(json.dumps(self._envelope([]) | {"usage": usage}), last)
            elif kind == "raw":
                await self._event(step[1], last)
            elif kind == "done":
                await self._event("[DONE]", True)
                return
            elif kind == "end":
                self.record.finished = True
                await self._write(b"", more=False)
                return
            elif kind == "abort":
                raise ScriptedAbort("scripted: connection dropped mid-stream")

    def _envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "system_fingerprint": "fp_fake", "choices": choices}

    async def _event(self, data: str, last: bool) -> None:
        if last:
            self.record.finished = True
        await self._write(f"data: {data}\n\n".encode(), more=not last)
        self.record.chunks_sent += 1
        self.record.sent_at.append(time.monotonic())

    async def _write(self, data: bytes, more: bool) -> None:
        if not self.started:
            self.started = True
            self.record.status = 200
            await self.send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                (b"x-request-id", f"req_{uuid.uuid4().hex[:16]}".encode())]})
        await self.send({"type": "http.response.body", "body": data, "more_body": more})


def _error_body(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


async def _respond(send: Callable, status: int, headers: dict[str, str], body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw_headers += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})
