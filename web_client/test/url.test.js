import test from "node:test";
import assert from "node:assert/strict";
import { socketUrl, messagesUrl, displayHost } from "../lib/url.js";

const page = { protocol: "https:", host: "app.example.com" };

test("defaults to the page's host, wss on https pages", () => {
  assert.equal(socketUrl({ agent: "MyAgent", instance: "abc", location: page }), "wss://app.example.com/agents/my-agent/abc");
  assert.equal(
    socketUrl({ agent: "assistant", location: { protocol: "http:", host: "localhost:8000" } }),
    "ws://localhost:8000/agents/assistant/default",
  );
});

test("explicit host, with or without a scheme", () => {
  assert.equal(socketUrl({ agent: "a", instance: "i", host: "voice.local:9000", location: page }), "wss://voice.local:9000/agents/a/i");
  assert.equal(socketUrl({ agent: "a", instance: "i", host: "http://10.0.0.2:8000", location: page }), "ws://10.0.0.2:8000/agents/a/i");
  assert.equal(socketUrl({ agent: "a", instance: "i", host: "https://x.dev" }), "wss://x.dev/agents/a/i");
});

test("encodes the instance and appends the query", () => {
  const url = socketUrl({ agent: "a", instance: "user 1/2", host: "h", query: { token: "t&1", skip: null }, location: page });
  assert.equal(url, "wss://h/agents/a/user%201%2F2?token=t%261");
});

test("a full url overrides everything; http schemes become ws", () => {
  assert.equal(socketUrl({ url: "http://h:1/custom/path", query: { a: 1 } }), "ws://h:1/custom/path?a=1");
  assert.equal(socketUrl({ url: "wss://h/x" }), "wss://h/x");
});

test("messages endpoint sits next to the socket, over http(s), keeping the query", () => {
  assert.equal(messagesUrl("wss://h/agents/a/i?token=t"), "https://h/agents/a/i/messages?token=t");
  assert.equal(messagesUrl("ws://h:8000/agents/a/i"), "http://h:8000/agents/a/i/messages");
  assert.equal(displayHost("ws://h:8000/agents/a/i"), "h:8000");
});

test("requires an agent and some host", () => {
  assert.throws(() => socketUrl({ instance: "i", host: "h" }), TypeError);
  assert.throws(() => socketUrl({ agent: "a", location: undefined }), TypeError);
});
