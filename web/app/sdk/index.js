// The Tern JavaScript SDK: a client for Tern's wire protocol over WebSocket with JSON payloads,
// for browsers and Node.
export { Client, newClientMsgId } from "./client.js";
export { Connection } from "./connection.js";
export { IndexedDbCursorStore, MemoryCursorStore } from "./cursor.js";
export { Flags, FrameError, HEADER_LEN, MessageType, PROTOCOL_VERSION, decodeFrame, encodeFrame, jsonPayload, jsonRequest, newPacketId, } from "./frame.js";
export { ConnectionLost, TernError, toNumber } from "./types.js";
