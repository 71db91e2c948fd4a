// One WebSocket connection to a Tern server: one frame per binary message, requests paired
// with their responses by packet id, server events handed to a callback. It knows nothing of
// login or sync; `Client` builds those on top and makes a new connection when one is lost.

import {
  Flags,
  decodeFrame,
  encodeFrame,
  jsonPayload,
  jsonRequest,
  packetKey,
  type Frame,
} from "./frame.js";
import { ConnectionLost, TernError } from "./types.js";

/** What the SDK needs of a WebSocket: the browser's, or Node's `ws` package's. */
export interface WebSocketLike {
  binaryType: string;
  readyState: number;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onclose: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number): void;
}

/** A WebSocket constructor. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

interface Pending {
  resolve: (payload: any) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

function bytesOf(data: unknown): Uint8Array | undefined {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (Array.isArray(data)) {
    // `ws` may hand over a message as fragments.
    const parts = data.map((d) => bytesOf(d) ?? new Uint8Array());
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
  return undefined;
}

/** One open connection. */
export class Connection {
  private readonly pending = new Map<string, Pending>();
  private closed = false;

  private constructor(
    private readonly socket: WebSocketLike,
    private readonly timeoutMs: number,
    private readonly onEvent: (frame: Frame) => void,
    private readonly onClose: () => void,
  ) {}

  /** Opens a connection to `url` (`ws://HOST:7701/ws`). */
  static open(
    url: string,
    WebSocketImpl: WebSocketConstructor,
    timeoutMs: number,
    onEvent: (frame: Frame) => void,
    onClose: () => void,
  ): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocketImpl(url);
      socket.binaryType = "arraybuffer";
      const conn = new Connection(socket, timeoutMs, onEvent, onClose);
      let opened = false;
      const timer = setTimeout(() => {
        if (!opened) {
          socket.close();
          reject(new ConnectionLost(`no connection to ${url} within ${timeoutMs} ms`));
        }
      }, timeoutMs);
      socket.onopen = () => {
        opened = true;
        clearTimeout(timer);
        resolve(conn);
      };
      socket.onerror = () => {
        if (!opened) {
          clearTimeout(timer);
          reject(new ConnectionLost(`cannot connect to ${url}`));
        }
      };
      socket.onclose = () => {
        clearTimeout(timer);
        if (!opened) reject(new ConnectionLost(`cannot connect to ${url}`));
        conn.lost();
      };
      socket.onmessage = (ev) => conn.receive(ev.data);
    });
  }

  /** Whether the connection is gone. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Sends a request and resolves with the response's payload, or rejects with the server's
   * `TernError`, a timeout, or `ConnectionLost`. */
  request<T = any>(type: number, payload: unknown, timeoutMs = this.timeoutMs): Promise<T> {
    if (this.closed) return Promise.reject(new ConnectionLost());
    const frame = jsonRequest(type, payload);
    const key = packetKey(frame.packetId);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(key);
        reject(new ConnectionLost(`no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(key, { resolve, reject, timer });
      try {
        this.socket.send(encodeFrame(frame));
      } catch (e) {
        clearTimeout(timer);
        this.pending.delete(key);
        reject(new ConnectionLost(String(e)));
      }
    });
  }

  /** Closes the connection; pending requests fail with `ConnectionLost`. */
  close(): void {
    try {
      this.socket.close(1000);
    } catch {
      // Already closing.
    }
    this.lost();
  }

  private receive(data: unknown): void {
    const bytes = bytesOf(data);
    if (!bytes) return;
    let frame: Frame;
    try {
      frame = decodeFrame(bytes);
    } catch {
      this.close();
      return;
    }
    if (frame.flags & Flags.RESPONSE) {
      const key = packetKey(frame.packetId);
      const p = this.pending.get(key);
      if (!p) {
        // A connection error (packet id zero) or an answer after its timeout.
        if (frame.type === 0) this.onEvent(frame);
        return;
      }
      this.pending.delete(key);
      clearTimeout(p.timer);
      let payload: any;
      try {
        payload = jsonPayload(frame);
      } catch (e) {
        p.reject(new Error(`an unreadable answer: ${e}`));
        return;
      }
      if (frame.flags & Flags.ERROR) {
        p.reject(
          new TernError(
            payload.code ?? 0,
            payload.name ?? "UNKNOWN",
            payload.message ?? "",
            payload.retryable ?? false,
            Number(payload.retryAfterMs ?? 0),
          ),
        );
      } else {
        p.resolve(payload);
      }
    } else {
      this.onEvent(frame);
    }
  }

  private lost(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new ConnectionLost());
    }
    this.pending.clear();
    this.onClose();
  }
}
