// One WebSocket connection to a Tern server: one frame per binary message, requests paired
// with their responses by packet id, server events handed to a callback. It knows nothing of
// login or sync; `Client` builds those on top and makes a new connection when one is lost.
import { Flags, decodeFrame, encodeFrame, jsonPayload, jsonRequest, packetKey, } from "./frame.js";
import { ConnectionLost, TernError } from "./types.js";
function bytesOf(data) {
    if (data instanceof Uint8Array)
        return data;
    if (data instanceof ArrayBuffer)
        return new Uint8Array(data);
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
    constructor(socket, timeoutMs, onEvent, onClose) {
        this.socket = socket;
        this.timeoutMs = timeoutMs;
        this.onEvent = onEvent;
        this.onClose = onClose;
        this.pending = new Map();
        this.closed = false;
    }
    /** Opens a connection to `url` (`ws://HOST:7701/ws`). */
    static open(url, WebSocketImpl, timeoutMs, onEvent, onClose) {
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
                if (!opened)
                    reject(new ConnectionLost(`cannot connect to ${url}`));
                conn.lost();
            };
            socket.onmessage = (ev) => conn.receive(ev.data);
        });
    }
    /** Whether the connection is gone. */
    get isClosed() {
        return this.closed;
    }
    /** Sends a request and resolves with the response's payload, or rejects with the server's
     * `TernError`, a timeout, or `ConnectionLost`. */
    request(type, payload, timeoutMs = this.timeoutMs) {
        if (this.closed)
            return Promise.reject(new ConnectionLost());
        const frame = jsonRequest(type, payload);
        const key = packetKey(frame.packetId);
        return new Promise((resolve, reject) => {
            const timer = setTimeout(() => {
                this.pending.delete(key);
                reject(new ConnectionLost(`no answer within ${timeoutMs} ms`));
            }, timeoutMs);
            this.pending.set(key, { resolve, reject, timer });
            try {
                this.socket.send(encodeFrame(frame));
            }
            catch (e) {
                clearTimeout(timer);
                this.pending.delete(key);
                reject(new ConnectionLost(String(e)));
            }
        });
    }
    /** Closes the connection; pending requests fail with `ConnectionLost`. */
    close() {
        try {
            this.socket.close(1000);
        }
        catch {
            // Already closing.
        }
        this.lost();
    }
    receive(data) {
        const bytes = bytesOf(data);
        if (!bytes)
            return;
        let frame;
        try {
            frame = decodeFrame(bytes);
        }
        catch {
            this.close();
            return;
        }
        if (frame.flags & Flags.RESPONSE) {
            const key = packetKey(frame.packetId);
            const p = this.pending.get(key);
            if (!p) {
                // A connection error (packet id zero) or an answer after its timeout.
                if (frame.type === 0)
                    this.onEvent(frame);
                return;
            }
            this.pending.delete(key);
            clearTimeout(p.timer);
            let payload;
            try {
                payload = jsonPayload(frame);
            }
            catch (e) {
                p.reject(new Error(`an unreadable answer: ${e}`));
                return;
            }
            if (frame.flags & Flags.ERROR) {
                p.reject(new TernError(payload.code ?? 0, payload.name ?? "UNKNOWN", payload.message ?? "", payload.retryable ?? false, Number(payload.retryAfterMs ?? 0)));
            }
            else {
                p.resolve(payload);
            }
        }
        else {
            this.onEvent(frame);
        }
    }
    lost() {
        if (this.closed)
            return;
        this.closed = true;
        for (const p of this.pending.values()) {
            clearTimeout(p.timer);
            p.reject(new ConnectionLost());
        }
        this.pending.clear();
        this.onClose();
    }
}
