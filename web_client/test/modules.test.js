/**
 * Smoke checks for the browser-only files: every module evaluates in node (so relative import paths
 * resolve and nothing touches the DOM at import time), react.js at least parses (its "react" peer isn't
 * installed here), and the demo page only references files that exist.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, existsSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

test("browser modules import cleanly without a DOM", async () => {
  const agent = await import("../voice-agent.js");
  const dictation = await import("../voice-dictation.js");
  const client = await import("../voice-client.js");
  assert.equal(typeof agent.VoiceAgentElement, "function");
  assert.deepEqual(agent.VoiceAgentElement.observedAttributes, ["agent", "instance", "host", "transport", "show-metrics"]);
  assert.equal(typeof dictation.VoiceDictationElement, "function");
  assert.equal(client.PROTOCOL_VERSION, 1);
  assert.equal(client.VoiceClient.supportsOutputDevice, false);
});

test("every .js file parses (including react.js, whose peer dependency isn't installed)", () => {
  const files = [
    ...readdirSync(root).filter((f) => f.endsWith(".js")),
    ...readdirSync(join(root, "lib")).map((f) => join("lib", f)),
  ];
  assert.ok(files.includes("react.js"));
  for (const file of files) execFileSync(process.execPath, ["--check", join(root, file)]);
});

test("index.html references existing, relative module paths", () => {
  const html = readFileSync(join(root, "index.html"), "utf8");
  const srcs = [...html.matchAll(/<script[^>]*src="([^"]+)"/g)].map((m) => m[1]);
  const imports = [...html.matchAll(/from "([^"]+)"/g)].map((m) => m[1]);
  assert.ok(srcs.length >= 2);
  for (const path of [...srcs, ...imports]) {
    assert.ok(path.startsWith("./"), `${path} must be relative so the page works under / and /client/`);
    assert.ok(existsSync(join(root, path)), `${path} exists`);
  }
});

test("no module imports a bare specifier except react.js", () => {
  const files = [
    ...readdirSync(root).filter((f) => f.endsWith(".js") && f !== "react.js"),
    ...readdirSync(join(root, "lib")).map((f) => join("lib", f)),
  ];
  for (const file of files) {
    const src = readFileSync(join(root, file), "utf8");
    for (const [, spec] of src.matchAll(/^\s*import\s[^"']*["']([^"']+)["']/gm)) {
      assert.ok(spec.startsWith("./") || spec.startsWith("../"), `${file} imports "${spec}"`);
    }
  }
});
