import test from "node:test";
import assert from "node:assert/strict";
import { kebab } from "../lib/kebab.js";

test("kebab-cases agent names like the server routes them", () => {
  assert.equal(kebab("MyVoiceAgent"), "my-voice-agent");
  assert.equal(kebab("my_agent"), "my-agent");
  assert.equal(kebab("assistant"), "assistant");
  assert.equal(kebab("Assistant"), "assistant");
  assert.equal(kebab("already-kebab"), "already-kebab");
  assert.equal(kebab("ASSISTANT"), "assistant");
  assert.equal(kebab("MY_AGENT"), "my-agent");
  assert.equal(kebab("myAgent_"), "my-agent");
});
