/** App messages: `sendJSON` out, `custommessage` / `lastCustomMessage` in (the names of Cloudflare's client). */
import test from "node:test";
import assert from "node:assert/strict";
import { setup } from "./client-fakes.js";

test("sendJSON sends the app's message as is, and says false when offline", () => {
  const { client, transport } = setup();
  client.connect();
  assert.equal(client.sendJSON({ type: "set_topic", topic: "weather" }), false);
  transport.open();
  assert.equal(client.sendJSON({ type: "set_topic", topic: "weather" }), true);
  assert.deepEqual(transport.sent.at(-1), { type: "set_topic", topic: "weather" });
  assert.deepEqual(client.protocolLog.at(-1).message, { type: "set_topic", topic: "weather" });
});

test("server messages of unknown types become custommessage events and lastCustomMessage", () => {
  const { client, transport } = setup();
  const got = [];
  client.addEventListener("custommessage", (e) => got.push(e.detail.message));
  client.connect();
  transport.open();
  assert.equal(client.lastCustomMessage, null);
  transport.server({ type: "topic_set", topic: "weather" });
  transport.server({ type: "status", status: "listening" }); // protocol messages are not custom
  transport.server({ type: "score", value: 3 });
  assert.deepEqual(got, [{ type: "topic_set", topic: "weather" }, { type: "score", value: 3 }]);
  assert.deepEqual(client.lastCustomMessage, { type: "score", value: 3 });
});
