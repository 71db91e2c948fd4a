// The client: logs in, follows the user's inbox from a persisted cursor with the protocol's
// sync algorithm (docs/protocol.md, section 11), retries sends with the same client message id
// until they are acked, and reconnects with backoff and jitter when the connection is lost.
// Everything it receives reaches the app as typed events, in inbox order, exactly once per
// device.

import { Connection, type WebSocketConstructor } from "./connection.js";
import { MemoryCursorStore, type CursorStore } from "./cursor.js";
import { MessageType, jsonPayload, type Frame } from "./frame.js";
import {
  ConnectionLost,
  TernError,
  toNumber,
  type Content,
  type Conversation,
  type GroupInfo,
  type InboxEntry,
  type Message,
  type Platform,
  type Presence,
  type SendAck,
  type Target,
} from "./types.js";

/** How a client connects and behaves. */
export interface ClientOptions {
  /** The server's WebSocket address, `ws://HOST:7701/ws`. */
  url: string;
  userId: string;
  /** For the first login; later logins use the token it returns. */
  password?: string;
  /** A token from an earlier login (or from the app's backend). */
  token?: string;
  /** Stable per installation. */
  deviceId: string;
  platform?: Platform;
  /** Where the inbox cursor is kept between runs (default: memory). */
  cursorStore?: CursorStore;
  /** The WebSocket implementation (default: the global one; in Node < 22, `ws`). */
  WebSocket?: WebSocketConstructor;
  /** How long a request may wait for its answer. */
  requestTimeoutMs?: number;
  /** The first wait before reconnecting, doubled after each failure up to `reconnectMaxMs`. */
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
  /** The HTTP API's address for files (default: the WebSocket's host, `http(s)://`). */
  httpBase?: string;
}

/** Where the client stands. */
export type ClientState = "online" | "reconnecting" | "closed";

/** What the client tells the app. */
export interface ClientEvents {
  /** An inbox entry, in inbox order, once (messages, and the user's notices). */
  entry: (entry: InboxEntry) => void;
  /** The message of an inbox entry (a convenience beside `entry`). */
  message: (message: Message) => void;
  /** A message of a large group, which has no inbox entry. */
  groupMessage: (message: Message) => void;
  presence: (presence: Presence) => void;
  typing: (notice: { fromUser: string; conversationId: string }) => void;
  state: (state: ClientState) => void;
  /** Another login replaced this one, or the token was revoked: no reconnect follows. */
  kicked: (kick: { reason?: string; message?: string }) => void;
}

type Listeners = { [K in keyof ClientEvents]: Set<ClientEvents[K]> };

/** A send waiting for its ack. */
interface Outgoing {
  request: Record<string, unknown>;
  resolve: (ack: SendAck) => void;
  reject: (error: Error) => void;
}

/**
 * A new client message id, unique per sender: 48 bits of milliseconds since the Unix epoch,
 * then 80 random bits, as 32 hex characters (the Rust SDK's format). Ids that increase over
 * time are the cheapest for the server to deduplicate.
 */
export function newClientMsgId(): string {
  const ms = Date.now().toString(16).padStart(12, "0").slice(-12);
  const random = new Uint8Array(10);
  globalThis.crypto.getRandomValues(random);
  let hex = "";
  for (const b of random) hex += b.toString(16).padStart(2, "0");
  return ms + hex;
}

function retryable(e: unknown): boolean {
  return e instanceof ConnectionLost || (e instanceof TernError && e.retryable);
}

/** A logged-in client that keeps itself connected. */
export class Client {
  private conn: Connection | undefined;
  private token: string | undefined;
  private cursor = 0;
  private ackedCursor = 0;
  /** Inbox seqs of this client's own acked sends, not yet passed by the cursor. */
  private readonly own = new Set<number>();
  private syncing: Promise<void> | undefined;
  private syncAgain = false;
  private state: ClientState = "reconnecting";
  private readonly listeners: Listeners = {
    entry: new Set(),
    message: new Set(),
    groupMessage: new Set(),
    presence: new Set(),
    typing: new Set(),
    state: new Set(),
    kicked: new Set(),
  };
  private readonly outgoing: Outgoing[] = [];
  private readonly followed = new Set<string>();
  private timers: ReturnType<typeof setInterval>[] = [];
  private reconnectWait: number;
  private online: Promise<void>;
  private setOnline!: () => void;
  private readonly store: CursorStore;
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly timeoutMs: number;

  private constructor(private readonly options: ClientOptions) {
    this.store = options.cursorStore ?? new MemoryCursorStore();
    const impl = options.WebSocket ?? (globalThis as any).WebSocket;
    if (!impl) throw new Error("no WebSocket: pass one (in Node, the `ws` package)");
    this.WebSocketImpl = impl;
    this.timeoutMs = options.requestTimeoutMs ?? 10_000;
    this.reconnectWait = options.reconnectInitialMs ?? 200;
    this.token = options.token;
    this.online = new Promise((resolve) => (this.setOnline = resolve));
  }

  /** Connects and logs in; fails if the first login fails (wrong password, say). Later losses
   * are recovered by reconnecting. `listen` is called with the client before it connects, to
   * attach listeners that must see the first sync's entries. */
  static async connect(options: ClientOptions, listen?: (client: Client) => void): Promise<Client> {
    const client = new Client(options);
    listen?.(client);
    const saved = await client.store.load(options.userId, options.deviceId);
    client.cursor = saved ?? 0;
    await client.connectOnce(saved === undefined);
    return client;
  }

  /** Registers an account (on a connection of its own, before any login). */
  static async register(
    url: string,
    userId: string,
    password: string,
    WebSocketImpl?: WebSocketConstructor,
  ): Promise<void> {
    const impl = WebSocketImpl ?? (globalThis as any).WebSocket;
    const conn = await Connection.open(url, impl, 10_000, () => {}, () => {});
    try {
      await conn.request(MessageType.REGISTER, { userId, password });
    } finally {
      conn.close();
    }
  }

  /** Listens to an event; returns a function that stops listening. */
  on<K extends keyof ClientEvents>(event: K, listener: ClientEvents[K]): () => void {
    (this.listeners[event] as Set<ClientEvents[K]>).add(listener);
    return () => (this.listeners[event] as Set<ClientEvents[K]>).delete(listener);
  }

  private emit<K extends keyof ClientEvents>(event: K, ...args: Parameters<ClientEvents[K]>) {
    for (const l of this.listeners[event]) {
      try {
        (l as (...a: unknown[]) => void)(...args);
      } catch (e) {
        console.error(`a ${event} listener failed`, e);
      }
    }
  }

  private setState(state: ClientState) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", state);
  }

  /** The user this client is logged in as. */
  get userId(): string {
    return this.options.userId;
  }

  /** The inbox seq up to which this device has everything. */
  get inboxCursor(): number {
    return this.cursor;
  }

  /** The token of this device (for the HTTP API, or the next run). */
  get deviceToken(): string | undefined {
    return this.token;
  }

  /** Where the client stands. */
  get connectionState(): ClientState {
    return this.state;
  }

  private async connectOnce(firstRun: boolean): Promise<void> {
    let opened: Connection | undefined;
    const conn = await Connection.open(
      this.options.url,
      this.WebSocketImpl,
      this.timeoutMs,
      (frame) => this.onEvent(frame),
      () => {
        if (opened) this.onLost(opened);
      },
    );
    // A close before this line fails the login below (the connection refuses requests).
    opened = conn;
    let login: any;
    try {
      login = await conn.request(MessageType.LOGIN, {
        userId: this.options.userId,
        deviceId: this.options.deviceId,
        platform: this.options.platform ?? "PLATFORM_WEB",
        ...(this.token ? { token: this.token } : { password: this.options.password }),
      });
    } catch (e) {
      conn.close();
      throw e;
    }
    this.token = login.token;
    this.conn = conn;
    // A device without a saved cursor starts where the server says it left off.
    if (firstRun && this.cursor === 0) this.cursor = toNumber(login.cursor);
    this.ackedCursor = Math.max(this.ackedCursor, toNumber(login.cursor));
    this.reconnectWait = this.options.reconnectInitialMs ?? 200;
    const heartbeat = Math.max(1000, Number(login.heartbeatIntervalMs ?? 30_000));
    this.timers.push(
      setInterval(() => {
        conn.request(MessageType.PING, { clientTimeMs: String(Date.now()) }).catch(() => {});
      }, heartbeat),
      setInterval(() => this.ackCursor(conn), 300),
    );
    if (this.followed.size > 0) {
      const resp = await conn
        .request(MessageType.PRESENCE_SUBSCRIBE, { userIds: [...this.followed] })
        .catch(() => undefined);
      for (const p of resp?.presences ?? []) this.emit("presence", p);
    }
    this.setState("online");
    this.setOnline();
    await this.sync();
    this.flushSends();
  }

  private onLost(conn: Connection) {
    if (this.conn !== conn) return;
    this.conn = undefined;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.state === "closed") return;
    this.online = new Promise((resolve) => (this.setOnline = resolve));
    this.setState("reconnecting");
    void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    while (this.state === "reconnecting") {
      // Full jitter: many clients losing one server do not all come back at once.
      const wait = Math.random() * this.reconnectWait;
      this.reconnectWait = Math.min(this.reconnectWait * 2, this.options.reconnectMaxMs ?? 10_000);
      await new Promise((r) => setTimeout(r, wait));
      if (this.state !== "reconnecting") return;
      try {
        await this.connectOnce(false);
        return;
      } catch (e) {
        if (e instanceof TernError && !e.retryable) {
          // The token was revoked or the account disabled: reconnecting will not help.
          this.setState("closed");
          this.emit("kicked", { reason: e.name, message: e.message });
          this.failSends(e);
          return;
        }
      }
    }
  }

  private onEvent(frame: Frame) {
    let payload: any;
    try {
      payload = jsonPayload(frame);
    } catch {
      return;
    }
    switch (frame.type) {
      case MessageType.PUSH:
        if (payload.entry) this.onPush(payload.entry);
        else if (payload.groupMessage) this.emit("groupMessage", payload.groupMessage);
        break;
      case MessageType.SYNC_NOTIFY:
        void this.sync();
        break;
      case MessageType.PRESENCE:
        this.emit("presence", payload);
        break;
      case MessageType.TYPING_NOTICE:
        this.emit("typing", payload);
        break;
      case MessageType.KICK:
        this.setState("closed");
        this.emit("kicked", payload);
        this.failSends(new Error("kicked"));
        break;
      case MessageType.GOODBYE:
        // The server is shutting down; the close follows and reconnecting takes over, after
        // the delay the server asked for.
        this.reconnectWait = Math.max(this.reconnectWait, Number(payload.reconnectAfterMs ?? 0));
        break;
      default:
        // Unknown events are ignored: that is how new ones are added within version 1.
        break;
    }
  }

  private onPush(entry: InboxEntry) {
    const seq = toNumber(entry.seq);
    if (seq <= this.cursor) return;
    if (seq === this.cursor + 1 && !this.syncing) {
      this.apply(entry);
    } else {
      void this.sync();
    }
  }

  private apply(entry: InboxEntry) {
    this.cursor = toNumber(entry.seq);
    this.own.delete(this.cursor);
    this.advanceOverOwn();
    void this.store.save(this.options.userId, this.options.deviceId, this.cursor);
    this.emit("entry", entry);
    if (entry.message) this.emit("message", entry.message);
  }

  /** The entries of this client's own sends are not pushed back to it: the cursor passes
   * them as soon as they are next. */
  private advanceOverOwn() {
    let moved = false;
    while (this.own.has(this.cursor + 1)) {
      this.own.delete(this.cursor + 1);
      this.cursor += 1;
      moved = true;
    }
    if (moved) void this.store.save(this.options.userId, this.options.deviceId, this.cursor);
  }

  /** Catches up from the cursor; one sync at a time, again if asked meanwhile. */
  sync(): Promise<void> {
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      try {
        do {
          this.syncAgain = false;
          const conn = this.conn;
          if (!conn) return;
          let more = true;
          while (more) {
            const page = await conn.request(MessageType.SYNC, { after: String(this.cursor) });
            for (const entry of (page.entries ?? []) as InboxEntry[]) {
              if (toNumber(entry.seq) === this.cursor + 1) this.apply(entry);
            }
            more = page.hasMore === true;
          }
        } while (this.syncAgain);
      } catch {
        // The connection went; the next one syncs again.
      } finally {
        this.syncing = undefined;
      }
    })();
    return this.syncing;
  }

  private ackCursor(conn: Connection) {
    if (this.cursor <= this.ackedCursor) return;
    const seq = this.cursor;
    conn
      .request(MessageType.ACK_CURSOR, { seq: String(seq) })
      .then(() => (this.ackedCursor = Math.max(this.ackedCursor, seq)))
      .catch(() => {});
  }

  /** Sends a message; resolves with its ack once it is durably stored. Survives lost
   * connections: the same request (same client message id) is sent again until answered, so
   * the message is stored once. */
  send(target: Target, content: Content, clientMsgId = newClientMsgId()): Promise<SendAck> {
    if (this.state === "closed") return Promise.reject(new Error("the client is closed"));
    const request = { ...target, clientMsgId, content };
    return new Promise((resolve, reject) => {
      const out: Outgoing = { request, resolve, reject };
      this.outgoing.push(out);
      void this.attempt(out);
    });
  }

  /** Sends text to a user. */
  sendText(to: string, text: string): Promise<SendAck> {
    return this.send({ toUser: to }, { text: { text } });
  }

  /** Sends text to a group. */
  sendGroupText(groupId: number, text: string): Promise<SendAck> {
    return this.send({ groupId }, { text: { text } });
  }

  private sending = new Set<Outgoing>();

  private async attempt(out: Outgoing): Promise<void> {
    // Settled already (an earlier attempt was answered), or in flight.
    if (this.sending.has(out) || !this.outgoing.includes(out)) return;
    const conn = this.conn;
    if (!conn) return;
    this.sending.add(out);
    try {
      const ack: SendAck = await conn.request(MessageType.SEND, out.request);
      this.sending.delete(out);
      this.settle(out);
      const inboxSeq = toNumber(ack.inboxSeq);
      if (inboxSeq > this.cursor) {
        this.own.add(inboxSeq);
        this.advanceOverOwn();
      }
      out.resolve(ack);
    } catch (e) {
      this.sending.delete(out);
      if (retryable(e)) {
        // Sent again on the next connection; on this one after the server's pause, or after
        // an answer that did not come in time while the connection stayed up (the same
        // client message id: stored once whichever attempt the server saw).
        if (this.conn === conn) {
          const wait = e instanceof TernError ? Math.max(e.retryAfterMs, 200) : 200;
          await new Promise((r) => setTimeout(r, wait));
          void this.attempt(out);
        }
        return;
      }
      this.settle(out);
      out.reject(e as Error);
    }
  }

  private settle(out: Outgoing) {
    const i = this.outgoing.indexOf(out);
    if (i >= 0) this.outgoing.splice(i, 1);
  }

  private flushSends() {
    for (const out of [...this.outgoing]) void this.attempt(out);
  }

  private failSends(e: Error) {
    for (const out of this.outgoing.splice(0)) out.reject(e);
  }

  /** Sends a request once a connection is up, and again on the next one if it is lost. */
  async request<T = any>(type: number, payload: unknown): Promise<T> {
    for (;;) {
      if (this.state === "closed") throw new Error("the client is closed");
      await this.online;
      const conn = this.conn;
      if (!conn) continue;
      try {
        return await conn.request<T>(type, payload);
      } catch (e) {
        if (!(e instanceof ConnectionLost)) throw e;
      }
    }
  }

  /** One page of a conversation's history, oldest first. */
  async history(params: {
    peer?: string;
    conversationId?: string;
    groupId?: number;
    anchorSeq?: number;
    direction?: "DIRECTION_BACKWARD" | "DIRECTION_FORWARD";
    limit?: number;
  }): Promise<{ messages: Message[]; hasMore: boolean }> {
    const { anchorSeq, ...rest } = params;
    const page = await this.request(MessageType.HISTORY, {
      ...rest,
      anchorSeq: String(anchorSeq ?? 0),
    });
    return { messages: page.messages ?? [], hasMore: page.hasMore === true };
  }

  /** The conversation list (whole, or the changes since a version). */
  async conversations(
    sinceVersion = 0,
  ): Promise<{ conversations: Conversation[]; version: number; full: boolean }> {
    const r = await this.request(MessageType.CONVERSATION_LIST, {
      sinceVersion: String(sinceVersion),
    });
    return {
      conversations: r.conversations ?? [],
      version: toNumber(r.version),
      full: r.full === true,
    };
  }

  /** Marks a conversation read up to `seq` (0: its newest). */
  async markRead(conversationId: string, seq = 0): Promise<void> {
    await this.request(MessageType.READ, { conversationId, seq: String(seq) });
  }

  /** Pins or mutes a conversation. */
  async updateConversation(
    conversationId: string,
    flags: { pinned?: boolean; muted?: boolean },
  ): Promise<void> {
    await this.request(MessageType.CONVERSATION_UPDATE, { conversationId, ...flags });
  }

  /** Recalls a message. */
  async recall(messageId: number | string): Promise<void> {
    await this.request(MessageType.RECALL, { messageId: String(messageId) });
  }

  /** Replaces a message's content. */
  async edit(messageId: number | string, content: Content): Promise<void> {
    await this.request(MessageType.EDIT, { messageId: String(messageId), content });
  }

  /** Tells `to` the user is typing. */
  async typing(to: string): Promise<void> {
    await this.request(MessageType.TYPING, { toUser: to });
  }

  /** Creates a group with the caller as owner. */
  async createGroup(name: string, members: string[]): Promise<GroupInfo> {
    const r = await this.request(MessageType.GROUP_CREATE, {
      name,
      members,
      clientRequestId: newClientMsgId(),
    });
    return r.group ?? r;
  }

  /** Adds members to a group (an admin or the owner). */
  async addMembers(groupId: number, members: string[]): Promise<void> {
    await this.request(MessageType.GROUP_UPDATE, {
      groupId: String(groupId),
      addMembers: { values: members },
    });
  }

  /** Asks `to` to be friends; whether they are friends now. */
  async requestFriend(to: string, message = ""): Promise<boolean> {
    const r = await this.request(MessageType.FRIEND_REQUEST, { toUser: to, message });
    return r.friends === true;
  }

  /** Accepts or declines `from`'s friend request. */
  async respondFriend(from: string, accept: boolean): Promise<void> {
    await this.request(MessageType.FRIEND_RESPOND, { fromUser: from, accept });
  }

  /** Blocks a user. */
  async block(userId: string): Promise<void> {
    await this.request(MessageType.BLOCK, { userId });
  }

  /** Unblocks a user. */
  async unblock(userId: string): Promise<void> {
    await this.request(MessageType.UNBLOCK, { userId });
  }

  /** Follows users' presence (friends only); followed again after each reconnect. */
  async subscribePresence(userIds: string[]): Promise<Presence[]> {
    for (const u of userIds) this.followed.add(u);
    const r = await this.request(MessageType.PRESENCE_SUBSCRIBE, { userIds });
    return r.presences ?? [];
  }

  /** Uploads a file over the HTTP API; its id goes in an image or file message. */
  async upload(bytes: Uint8Array | Blob, name: string): Promise<Record<string, unknown>> {
    const base =
      this.options.httpBase ??
      this.options.url.replace(/^ws/, "http").replace(/\/ws$/, "").replace(/\/$/, "");
    const response = await fetch(`${base}/v1/files?name=${encodeURIComponent(name)}`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${this.token}`,
        "content-type": "application/octet-stream",
      },
      body: bytes as BodyInit,
    });
    const body = await response.json();
    if (!response.ok) {
      throw new TernError(body.code ?? 0, body.name ?? "HTTP", body.message ?? "", false, 0);
    }
    return body;
  }

  /** Logs this device out (its token stops working) and closes. */
  async logout(): Promise<void> {
    const conn = this.conn;
    this.setState("closed");
    if (conn) await conn.request(MessageType.LOGOUT, {}).catch(() => {});
    this.close();
  }

  /** Closes the connection and stops reconnecting; unacked sends fail. */
  close(): void {
    this.setState("closed");
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    const conn = this.conn;
    this.conn = undefined;
    if (conn) {
      this.ackCursor(conn);
      conn.close();
    }
    this.failSends(new Error("the client is closed"));
  }
}
