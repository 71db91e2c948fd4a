// The Tern JavaScript SDK: a client for Tern's wire protocol over WebSocket with JSON payloads,
// for browsers and Node.

export { Client, newClientMsgId } from "./client.js";
export type { ClientEvents, ClientOptions, ClientState } from "./client.js";
export { Connection } from "./connection.js";
export type { WebSocketConstructor, WebSocketLike } from "./connection.js";
export { IndexedDbCursorStore, MemoryCursorStore } from "./cursor.js";
export type { CursorStore } from "./cursor.js";
export {
  Flags,
  FrameError,
  HEADER_LEN,
  MessageType,
  PROTOCOL_VERSION,
  decodeFrame,
  encodeFrame,
  jsonPayload,
  jsonRequest,
  newPacketId,
} from "./frame.js";
export type { Frame } from "./frame.js";
export { ConnectionLost, TernError, toNumber } from "./types.js";
export type {
  Content,
  Conversation,
  GroupInfo,
  InboxEntry,
  Int64,
  Message,
  Platform,
  Presence,
  SendAck,
  Target,
} from "./types.js";
