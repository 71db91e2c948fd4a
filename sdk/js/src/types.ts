// The payloads this SDK reads and writes, in the protocol's JSON mapping (docs/protocol.md,
// section 6): field names in lowerCamelCase, 64-bit integers as decimal strings (read here as
// `Int64`, turned into numbers with `toNumber`), enums by name. Unknown keys are kept as they
// come, so a newer server's fields reach the app untouched.

/** A 64-bit integer as the JSON mapping writes it (a string), or as a number. */
export type Int64 = string | number;

/** A 64-bit integer as a number (seqs and ids stay far below 2^53). */
export function toNumber(v: Int64 | undefined | null): number {
  if (v === undefined || v === null || v === "") return 0;
  return typeof v === "number" ? v : Number(v);
}

/** The device class (the kick policy works per platform). */
export type Platform =
  | "PLATFORM_UNSPECIFIED"
  | "PLATFORM_IOS"
  | "PLATFORM_ANDROID"
  | "PLATFORM_WEB"
  | "PLATFORM_DESKTOP"
  | "PLATFORM_CLI";

/** What a message says: exactly one body. */
export interface Content {
  text?: { text: string };
  image?: {
    fileId?: string;
    url?: string;
    width?: number;
    height?: number;
    size?: Int64;
    mime?: string;
    thumbWidth?: number;
    thumbHeight?: number;
  };
  file?: { fileId?: string; url?: string; name?: string; size?: Int64; mime?: string };
  custom?: { kind: string; data: string };
  groupEvent?: Record<string, unknown>;
  recall?: { messageId: Int64; seq: Int64 };
  edit?: { messageId: Int64; seq: Int64; content?: Content };
  readMark?: Record<string, unknown>;
  conversationFlags?: Record<string, unknown>;
  friendEvent?: Record<string, unknown>;
  profileChanged?: Record<string, unknown>;
  blockChanged?: Record<string, unknown>;
  [other: string]: unknown;
}

/** A stored message as every device sees it. */
export interface Message {
  messageId: Int64;
  conversationId: string;
  seq: Int64;
  sender: string;
  clientMsgId?: string;
  serverTimeMs?: Int64;
  /** Absent when recalled. */
  content?: Content;
  recalled?: boolean;
  recalledBy?: string;
  editedAtMs?: Int64;
}

/** One entry of the user's inbox. */
export interface InboxEntry {
  seq: Int64;
  message?: Message;
}

/** A send's acknowledgement: the message is durably stored. */
export interface SendAck {
  messageId: Int64;
  conversationId: string;
  seq: Int64;
  serverTimeMs: Int64;
  /** The sender's own inbox entry for the message. */
  inboxSeq: Int64;
  duplicate?: boolean;
}

/** Where a message goes. */
export type Target = { toUser: string } | { groupId: number };

/** A conversation as the user's list shows it. */
export interface Conversation {
  conversationId: string;
  peer?: string;
  groupId?: Int64;
  maxSeq?: Int64;
  readSeq?: Int64;
  unread?: number;
  lastMessage?: Message;
  pinned?: boolean;
  muted?: boolean;
  peerReadSeq?: Int64;
  [other: string]: unknown;
}

/** A user's presence. */
export interface Presence {
  userId: string;
  online?: boolean;
  devices?: { deviceId: string; platform?: Platform }[];
}

/** A group. */
export interface GroupInfo {
  groupId: Int64;
  conversationId: string;
  name: string;
  [other: string]: unknown;
}

/** An error the server answered with (section 8). */
export class TernError extends Error {
  constructor(
    /** The stable numeric code. */
    readonly code: number,
    /** The stable name, e.g. `NOT_LOGGED_IN`. */
    readonly name: string,
    message: string,
    /** Whether the same request may succeed later. */
    readonly retryable: boolean,
    /** With `RATE_LIMITED`: when to try again. */
    readonly retryAfterMs: number,
  ) {
    super(`${name} (${code}): ${message}`);
  }
}

/** The connection was lost before the answer came: the request may or may not have run. */
export class ConnectionLost extends Error {
  constructor(message = "the connection was lost") {
    super(message);
  }
}
