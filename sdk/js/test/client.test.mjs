// The client against a real Tern server, started by the test from the binary the workspace
// builds (TERN_BIN, or ../../target/debug/tern): two users chat both ways in order, a second
// device of one user converges, sends survive a server restart in the middle of a conversation
// (nothing lost, nothing doubled), and errors arrive as typed errors.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { webcrypto } from "node:crypto";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import WebSocket, { WebSocketServer } from "ws";
import {
  Client,
  Flags,
  MemoryCursorStore,
  MessageType,
  TernError,
  decodeFrame,
  toNumber,
} from "../dist/index.js";

// Node 18 has Web Crypto only under `node:crypto`; browsers and Node 19+ have it global.
globalThis.crypto ??= webcrypto;

const bin = process.env.TERN_BIN ?? new URL("../../../target/debug/tern", import.meta.url).pathname;
const dirs = [];
const servers = new Set();

after(() => {
  for (const s of servers) s.kill("SIGKILL");
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Starts `tern serve` over `dir` (a fresh one by default); resolves with its WebSocket URL. */
function startServer(dir, httpAddr = "127.0.0.1:0") {
  if (!dir) {
    dir = mkdtempSync(join(tmpdir(), "tern-js-"));
    dirs.push(dir);
  }
  const child = spawn(
    bin,
    ["serve", "--tcp-addr", "127.0.0.1:0", "--http-addr", httpAddr, "--data-dir", dir],
    {
      env: {
        ...process.env,
        TERN_ARGON2_MEMORY_KIB: "64",
        TERN_ARGON2_ITERATIONS: "1",
        TERN_LOG: "warn",
        TERN_REGISTRATIONS_PER_ADDRESS: "0",
        TERN_MAX_CONNECTIONS_PER_ADDRESS: "0",
      },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  servers.add(child);
  child.on("exit", () => servers.delete(child));
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      const m = line.match(/^tern: http listening on (\S+)/);
      if (m) resolve({ child, dir, http: m[1], url: `ws://${m[1]}/ws` });
    });
    child.on("exit", (code) => reject(new Error(`tern serve exited with ${code}`)));
  });
}

async function stopServer(server) {
  const exited = new Promise((r) => server.child.once("exit", r));
  server.child.kill("SIGTERM");
  await exited;
}

function connect(server, user, device, extra = {}, listen = undefined) {
  return Client.connect({
    url: server.url,
    userId: user,
    password: `password-${user}`,
    deviceId: device,
    WebSocket,
    reconnectInitialMs: 50,
    reconnectMaxMs: 500,
    ...extra,
  }, listen);
}

/** Collects the texts of a client's messages (in arrival order) until `n` arrived. */
function inbox(client) {
  const texts = [];
  const waiters = [];
  client.on("message", (m) => {
    if (m.content?.text) texts.push(m.content.text.text);
    for (const w of [...waiters]) if (texts.length >= w.n) w.resolve(texts.slice());
  });
  return {
    texts,
    until(n, ms = 15_000) {
      if (texts.length >= n) return Promise.resolve(texts.slice());
      return new Promise((resolve, reject) => {
        const w = { n, resolve };
        waiters.push(w);
        setTimeout(() => reject(new Error(`only ${texts.length} of ${n}: ${texts}`)), ms);
      });
    },
  };
}

test("two users chat both ways in order, and a second device converges", async () => {
  const server = await startServer();
  for (const u of ["alice", "bob"]) await Client.register(server.url, u, `password-${u}`, WebSocket);
  let aliceGot, bobGot, bob2Got;
  const alice = await connect(server, "alice", "web-1", {}, (c) => (aliceGot = inbox(c)));
  const bob = await connect(server, "bob", "web-1", {}, (c) => (bobGot = inbox(c)));
  for (let i = 0; i < 20; i++) {
    await alice.sendText("bob", `a${i}`);
    await bob.sendText("alice", `b${i}`);
  }
  assert.deepEqual(await bobGot.until(20), Array.from({ length: 20 }, (_, i) => `a${i}`));
  assert.deepEqual(await aliceGot.until(20), Array.from({ length: 20 }, (_, i) => `b${i}`));

  // Bob's second device starts from nothing and sees the whole conversation, his own messages
  // included, in one order.
  // A second browser tab: another device of the same platform, which the default kick policy
  // lets stay beside the first.
  const bob2 = await connect(server, "bob", "web-2", {}, (c) => (bob2Got = inbox(c)));
  const all = await bob2Got.until(40);
  assert.equal(all.filter((t) => t.startsWith("a")).join(), bobGot.texts.join());
  assert.equal(bob2.inboxCursor, bob.inboxCursor);

  // The conversation list and history agree.
  const list = await bob.conversations();
  assert.equal(list.conversations[0].conversationId, "p:alice:bob");
  const page = await bob.history({ peer: "alice", limit: 5 });
  assert.equal(page.messages.length, 5);
  assert.equal(toNumber(page.messages[4].seq), 40);

  // Errors are typed.
  await assert.rejects(alice.sendText("nobody", "hi"), (e) => e instanceof TernError && e.name === "UNKNOWN_USER");
  await assert.rejects(
    connect(server, "alice", "web-3", { password: "wrong password" }),
    (e) => e instanceof TernError && e.name === "AUTH_FAILED",
  );
  for (const c of [alice, bob, bob2]) c.close();
  await stopServer(server);
});

test("a server restart in the middle of a conversation loses and doubles nothing", async () => {
  const first = await startServer();
  for (const u of ["alice", "bob"]) await Client.register(first.url, u, `password-${u}`, WebSocket);
  const cursors = new MemoryCursorStore();
  let bobGot;
  const alice = await connect(first, "alice", "web-1");
  const bob = await connect(first, "bob", "web-1", { cursorStore: cursors }, (c) => (bobGot = inbox(c)));
  const states = [];
  alice.on("state", (s) => states.push(s));
  const sends = [];
  for (let i = 0; i < 30; i++) {
    sends.push(alice.sendText("bob", `m${i}`));
    if (i === 10) {
      // Down mid-conversation, then up again on the same address and data.
      await stopServer(first);
      await startServer(first.dir, first.http);
    }
  }
  const acks = await Promise.all(sends);
  assert.deepEqual(
    acks.map((a) => toNumber(a.seq)),
    Array.from({ length: 30 }, (_, i) => i + 1),
    "every send stored once, in order",
  );
  const texts = await bobGot.until(30);
  assert.deepEqual(texts, Array.from({ length: 30 }, (_, i) => `m${i}`));
  assert.ok(states.includes("reconnecting") && states.at(-1) === "online", String(states));
  assert.equal(await cursors.load("bob", "web-1"), bob.inboxCursor);
  for (const c of [alice, bob]) c.close();
});

/** A WebSocket relay in front of `server` that loses the first answer to a SEND: the request
 * reached the server and was stored, but its client never hears so. */
async function lossyRelay(server) {
  const relay = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((r) => relay.once("listening", r));
  const state = { dropped: 0, sends: 0 };
  relay.on("connection", (client) => {
    const upstream = new WebSocket(server.url);
    const early = [];
    upstream.on("open", () => early.splice(0).forEach((m) => upstream.send(m)));
    client.on("message", (data) => {
      const frame = decodeFrame(new Uint8Array(data));
      if (frame.type === MessageType.SEND) state.sends += 1;
      if (upstream.readyState === WebSocket.OPEN) upstream.send(data);
      else early.push(data);
    });
    upstream.on("message", (data) => {
      const frame = decodeFrame(new Uint8Array(data));
      const sendAnswer = frame.type === MessageType.SEND && (frame.flags & Flags.RESPONSE) !== 0;
      if (sendAnswer && state.dropped === 0) {
        state.dropped += 1;
        return;
      }
      client.send(data);
    });
    client.on("close", () => upstream.close());
    upstream.on("close", () => client.close());
  });
  return { url: `ws://127.0.0.1:${relay.address().port}/ws`, state, close: () => relay.close() };
}

test("a send whose answer is lost on a live connection is sent again there, and stored once", async () => {
  const server = await startServer();
  for (const u of ["alice", "bob"]) await Client.register(server.url, u, `password-${u}`, WebSocket);
  const relay = await lossyRelay(server);
  let bobGot;
  const bob = await connect(server, "bob", "pc", {}, (c) => (bobGot = inbox(c)));
  const alice = await connect(relay, "alice", "pc", { requestTimeoutMs: 500 });
  const ack = await alice.sendText("bob", "said once");
  assert.equal(relay.state.dropped, 1);
  assert.equal(relay.state.sends, 2, "sent again on the same connection");
  assert.equal(ack.duplicate, true, "the second attempt found the first one stored");
  assert.equal(alice.connectionState, "online");
  await alice.sendText("bob", "and then");
  assert.deepEqual(await bobGot.until(2), ["said once", "and then"]);
  const history = await bob.history({ peer: "alice" });
  assert.deepEqual(
    history.messages.map((m) => m.content?.text?.text),
    ["said once", "and then"],
  );
  for (const c of [alice, bob]) c.close();
  relay.close();
  await stopServer(server);
});
