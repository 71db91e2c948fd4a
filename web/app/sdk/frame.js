// The frame of the Tern wire protocol (docs/protocol.md, sections 2 to 4): a 28-byte header,
// big-endian, then the payload. This SDK always speaks JSON payloads, so it needs no protobuf
// library; the codec is pure (no sockets, no clock) and shared by the client and its tests.
/** The header's size in bytes. */
export const HEADER_LEN = 28;
/** The protocol version this SDK speaks. */
export const PROTOCOL_VERSION = 1;
/** Frame flags (section 3). */
export const Flags = {
    JSON: 0x1,
    RESPONSE: 0x2,
    ERROR: 0x4,
};
/** Message types (section 5). */
export const MessageType = {
    CONNECTION_ERROR: 0x0000,
    PING: 0x0001,
    REGISTER: 0x0002,
    LOGIN: 0x0003,
    LOGOUT: 0x0004,
    KICK: 0x0005,
    GOODBYE: 0x0006,
    SEND: 0x0101,
    PUSH: 0x0102,
    SYNC: 0x0103,
    ACK_CURSOR: 0x0104,
    HISTORY: 0x0105,
    SYNC_NOTIFY: 0x0106,
    MESSAGE_SEARCH: 0x0107,
    GROUP_CREATE: 0x0201,
    GROUP_UPDATE: 0x0202,
    GROUP_INFO: 0x0203,
    GROUP_MEMBERS: 0x0204,
    GROUP_LIST: 0x0205,
    TYPING: 0x0301,
    TYPING_NOTICE: 0x0302,
    READ: 0x0401,
    RECALL: 0x0402,
    EDIT: 0x0403,
    CONVERSATION_LIST: 0x0404,
    CONVERSATION_UPDATE: 0x0405,
    PROFILE_GET: 0x0501,
    PROFILE_UPDATE: 0x0502,
    USER_SEARCH: 0x0503,
    FRIEND_REQUEST: 0x0511,
    FRIEND_RESPOND: 0x0512,
    FRIEND_DELETE: 0x0513,
    FRIEND_REMARK: 0x0514,
    FRIEND_LIST: 0x0515,
    BLOCK: 0x0521,
    UNBLOCK: 0x0522,
    BLOCK_LIST: 0x0523,
    PRESENCE_SUBSCRIBE: 0x0601,
    PRESENCE_UNSUBSCRIBE: 0x0602,
    PRESENCE: 0x0603,
    OBSERVE: 0x0701,
    PUSH_REGISTER: 0x0801,
    PUSH_UNREGISTER: 0x0802,
    PUSH_APP_STATE: 0x0803,
};
/** Why bytes are not a frame. */
export class FrameError extends Error {
}
/** A random packet id: 16 bytes, unique among a connection's requests in flight. */
export function newPacketId() {
    const id = new Uint8Array(16);
    globalThis.crypto.getRandomValues(id);
    return id;
}
/** The packet id as hex, to pair responses with requests. */
export function packetKey(id) {
    let out = "";
    for (const b of id)
        out += b.toString(16).padStart(2, "0");
    return out;
}
/** Encodes a frame: the header, then the payload. */
export function encodeFrame(frame) {
    if (frame.packetId.length !== 16)
        throw new FrameError("a packet id is 16 bytes");
    const out = new Uint8Array(HEADER_LEN + frame.payload.length);
    const view = new DataView(out.buffer);
    view.setUint32(0, out.length);
    view.setUint16(4, frame.type);
    view.setUint16(6, frame.version);
    view.setUint32(8, frame.flags);
    out.set(frame.packetId, 12);
    out.set(frame.payload, HEADER_LEN);
    return out;
}
/** Decodes one whole frame (a WebSocket message holds exactly one). */
export function decodeFrame(bytes) {
    if (bytes.length < HEADER_LEN)
        throw new FrameError(`a frame is at least ${HEADER_LEN} bytes`);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const length = view.getUint32(0);
    if (length !== bytes.length) {
        throw new FrameError(`the length field says ${length} bytes, the message has ${bytes.length}`);
    }
    return {
        type: view.getUint16(4),
        version: view.getUint16(6),
        flags: view.getUint32(8),
        packetId: bytes.slice(12, 28),
        payload: bytes.slice(HEADER_LEN),
    };
}
const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** A request frame with a JSON payload. */
export function jsonRequest(type, payload, packetId = newPacketId()) {
    return {
        type,
        version: PROTOCOL_VERSION,
        flags: Flags.JSON,
        packetId,
        payload: encoder.encode(JSON.stringify(payload ?? {})),
    };
}
/** A frame's JSON payload, parsed (an empty payload is the message with every default). */
export function jsonPayload(frame) {
    if (frame.payload.length === 0)
        return {};
    return JSON.parse(decoder.decode(frame.payload));
}
