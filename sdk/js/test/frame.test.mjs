// The codec against the protocol document's golden vectors: each JSON vector decodes to the
// payload the document shows and encodes back to the same bytes.

import { test } from "node:test";
import assert from "node:assert/strict";
import { webcrypto } from "node:crypto";
import { readFileSync } from "node:fs";
import {
  decodeFrame,
  encodeFrame,
  jsonPayload,
  newClientMsgId,
  Flags,
  MessageType,
} from "../dist/index.js";

// Node 18 has Web Crypto only under `node:crypto`; browsers and Node 19+ have it global.
globalThis.crypto ??= webcrypto;

const doc = readFileSync(new URL("../../../docs/protocol.md", import.meta.url), "utf8");

function vector(name) {
  const at = doc.indexOf(`<!-- golden:${name} -->`);
  assert.ok(at >= 0, `the document has the vector ${name}`);
  const block = doc.slice(doc.indexOf("```hex", at) + 6, doc.indexOf("```", doc.indexOf("```hex", at) + 6));
  return Uint8Array.from(Buffer.from(block.replace(/\s+/g, ""), "hex"));
}

test("the JSON golden vectors decode and encode byte for byte", () => {
  const login = decodeFrame(vector("login-json"));
  assert.equal(login.type, MessageType.LOGIN);
  assert.equal(login.flags, Flags.JSON);
  assert.deepEqual(jsonPayload(login), {
    userId: "alice",
    deviceId: "phone-1",
    platform: "PLATFORM_IOS",
    password: "correct horse",
  });
  const error = decodeFrame(vector("error-json"));
  assert.equal(error.flags, Flags.JSON | Flags.RESPONSE | Flags.ERROR);
  assert.equal(jsonPayload(error).name, "UNKNOWN_USER");
  const sync = decodeFrame(vector("sync-json"));
  assert.deepEqual(jsonPayload(sync), { after: "5", limit: 100 });
  for (const name of ["login-json", "error-json", "sync-json", "ping-protobuf", "push-protobuf"]) {
    const bytes = vector(name);
    assert.deepEqual(encodeFrame(decodeFrame(bytes)), bytes, name);
  }
});

test("a message that is not exactly one frame is refused", () => {
  const bytes = vector("sync-json");
  assert.throws(() => decodeFrame(bytes.slice(0, 20)));
  assert.throws(() => decodeFrame(bytes.slice(0, bytes.length - 1)));
  const longer = new Uint8Array(bytes.length + 1);
  longer.set(bytes);
  assert.throws(() => decodeFrame(longer));
});

test("client message ids are 32 hex characters that increase with time", async () => {
  const first = newClientMsgId();
  await new Promise((r) => setTimeout(r, 5));
  const second = newClientMsgId();
  assert.match(first, /^[0-9a-f]{32}$/);
  assert.match(second, /^[0-9a-f]{32}$/);
  assert.ok(second > first, `${second} sorts after ${first}`);
  assert.equal(parseInt(first.slice(0, 12), 16) <= Date.now(), true);
  assert.notEqual(newClientMsgId(), newClientMsgId());
});
