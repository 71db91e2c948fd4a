// The payloads this SDK reads and writes, in the protocol's JSON mapping (docs/protocol.md,
// section 6): field names in lowerCamelCase, 64-bit integers as decimal strings (read here as
// `Int64`, turned into numbers with `toNumber`), enums by name. Unknown keys are kept as they
// come, so a newer server's fields reach the app untouched.
/** A 64-bit integer as a number (seqs and ids stay far below 2^53). */
export function toNumber(v) {
    if (v === undefined || v === null || v === "")
        return 0;
    return typeof v === "number" ? v : Number(v);
}
/** An error the server answered with (section 8). */
export class TernError extends Error {
    constructor(
    /** The stable numeric code. */
    code, 
    /** The stable name, e.g. `NOT_LOGGED_IN`. */
    name, message, 
    /** Whether the same request may succeed later. */
    retryable, 
    /** With `RATE_LIMITED`: when to try again. */
    retryAfterMs) {
        super(`${name} (${code}): ${message}`);
        this.code = code;
        this.name = name;
        this.retryable = retryable;
        this.retryAfterMs = retryAfterMs;
    }
}
/** The connection was lost before the answer came: the request may or may not have run. */
export class ConnectionLost extends Error {
    constructor(message = "the connection was lost") {
        super(message);
    }
}
