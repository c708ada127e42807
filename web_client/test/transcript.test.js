import test from "node:test";
import assert from "node:assert/strict";
import { TranscriptStore } from "../lib/transcript.js";

const texts = (s) => s.messages.map((m) => `${m.role}:${m.text}${m.pending ? "…" : ""}${m.interrupted ? "!" : ""}`);

test("final messages and a streamed assistant message", () => {
  const s = new TranscriptStore();
  s.addFinal("user", "hi");
  s.startAssistant();
  s.appendDelta("Hel");
  s.appendDelta("lo");
  assert.deepEqual(texts(s), ["user:hi", "assistant:Hello…"]);
  s.endAssistant("Hello there.");
  assert.deepEqual(texts(s), ["user:hi", "assistant:Hello there."]);
});

test("every change yields a new frozen array", () => {
  const s = new TranscriptStore();
  const before = s.messages;
  s.addFinal("user", "x");
  assert.notEqual(s.messages, before);
  assert.ok(Object.isFrozen(s.messages));
});

test("transcript_end without deltas (or without a start) still produces one message", () => {
  const s = new TranscriptStore();
  s.startAssistant();
  s.endAssistant("Whole reply.");
  s.addFinal("user", "ok");
  s.endAssistant("Unannounced reply.");
  assert.deepEqual(texts(s), ["assistant:Whole reply.", "user:ok", "assistant:Unannounced reply."]);
});

test("markInterrupted flags only the latest assistant message", () => {
  const s = new TranscriptStore();
  s.addFinal("assistant", "long answer");
  assert.equal(s.markInterrupted(), true);
  s.addFinal("user", "stop");
  assert.equal(s.markInterrupted(), false);
  assert.deepEqual(texts(s), ["assistant:long answer!", "user:stop"]);
});

test("history replaces the list; live messages after the sync started and the open reply survive", () => {
  const s = new TranscriptStore();
  s.addFinal("user", "old local");
  const token = s.beginSync();
  s.addFinal("user", "said while loading");
  s.startAssistant();
  s.appendDelta("Streaming");
  s.applyHistory(
    [
      { id: 1, role: "user", content: "earlier question", interrupted: false, created_at: 1700000000 },
      { id: 2, role: "assistant", content: "earlier answer, cut", interrupted: true, created_at: 1700000001 },
      { id: 3, role: "system", content: "ignored" },
    ],
    token,
  );
  assert.deepEqual(texts(s), [
    "user:earlier question",
    "assistant:earlier answer, cut!",
    "user:said while loading",
    "assistant:Streaming…",
  ]);
  assert.equal(s.messages[0].id, "1");
  assert.equal(s.messages[0].createdAt, 1700000000000);
  s.appendDelta(" on");
  assert.equal(s.messages.at(-1).text, "Streaming on");
});

test("a live message the history already contains is not duplicated", () => {
  const s = new TranscriptStore();
  const token = s.beginSync();
  s.addFinal("user", "same");
  s.applyHistory([{ id: 9, role: "user", content: "same" }], token);
  assert.deepEqual(texts(s), ["user:same"]);
});

test("keeps at most `max` messages", () => {
  const s = new TranscriptStore({ max: 3 });
  for (let i = 0; i < 5; i++) s.addFinal("user", String(i));
  assert.deepEqual(texts(s), ["user:2", "user:3", "user:4"]);
});
