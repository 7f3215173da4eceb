/**
 * SETTINGS both ways: what this side announces in its first frame (`ourSettings`, with the windows and frame size it
 * defaults to), and a peer's SETTINGS frame read and checked (RFC 9113 section 6.5.2), entry by entry in order, into
 * the values the connection applies. What walks the streams (a new INITIAL_WINDOW_SIZE, a new stream limit) the connection does
 * once, with the last value, as nghttp2 does: not once per entry (CVE-2020-11080 class).
 */
import { DEFAULT_MAX_FRAME_SIZE, DEFAULT_WINDOW, ErrorCode, MAX_WINDOW, parseSettings, Setting } from "./frame.ts";
import { ConnectionError, type ConnectionOptions } from "./options.ts";

/** Our streams' receive window unless ConnectionOptions.streamWindow says otherwise. */
export const DEFAULT_STREAM_WINDOW = 1 << 20;
/** Our connection's receive window unless ConnectionOptions.connectionWindow says otherwise. */
export const DEFAULT_CONNECTION_WINDOW = 32 << 20;
/** The largest frame we accept unless ConnectionOptions.maxFrameSize says otherwise. */
export const DEFAULT_FRAME_SIZE = 1 << 17;

/** What this side announces in its first SETTINGS frame. */
export function ourSettings(
  role: "client" | "server",
  streamWindow: number,
  maxFrameSize: number,
  maxConcurrentStreams = 100_000,
): [number, number][] {
  const windows: [number, number][] = [[Setting.INITIAL_WINDOW_SIZE, streamWindow], [
    Setting.MAX_FRAME_SIZE,
    maxFrameSize,
  ]];
  return role === "client"
    ? [[Setting.ENABLE_PUSH, 0], ...windows] // ENABLE_PUSH is the client's to send (section 6.5.2)
    : [...windows, [Setting.MAX_CONCURRENT_STREAMS, maxConcurrentStreams]];
}

/** Our connection window: never under the 65,535 every connection starts with (RFC 9113 section 6.9.2). */
export function connectionWindow(options: ConnectionOptions): number {
  return Math.max(DEFAULT_WINDOW, options.connectionWindow ?? DEFAULT_CONNECTION_WINDOW);
}

/** What one SETTINGS frame changes; a field is undefined when the frame does not set it. */
export interface SettingsUpdate {
  maxConcurrentStreams: number | undefined;
  initialWindowSize: number | undefined;
  maxFrameSize: number | undefined;
  /** The peer lowered HEADER_TABLE_SIZE under 4,096: our next block starts with a table size update to 0. */
  smallerTable: boolean;
}

/** Reads a SETTINGS payload of at most `maxEntries` entries; a bad one is a connection error. */
export function readSettings(p: Uint8Array, maxEntries: number): SettingsUpdate {
  const list = parseSettings(p);
  if (!list) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6");
  if (list.length > maxEntries) {
    throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, `SETTINGS of over ${maxEntries} entries`);
  }
  const u: SettingsUpdate = {
    maxConcurrentStreams: undefined,
    initialWindowSize: undefined,
    maxFrameSize: undefined,
    smallerTable: false,
  };
  for (const [k, v] of list) {
    switch (k) {
      case Setting.ENABLE_PUSH:
        if (v > 1) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "ENABLE_PUSH not 0 or 1");
        break;
      case Setting.MAX_CONCURRENT_STREAMS:
        u.maxConcurrentStreams = v;
        break;
      case Setting.INITIAL_WINDOW_SIZE:
        if (v > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE over 2^31-1");
        u.initialWindowSize = v;
        break;
      case Setting.MAX_FRAME_SIZE:
        if (v < DEFAULT_MAX_FRAME_SIZE || v > 16_777_215) {
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `MAX_FRAME_SIZE ${v} out of range`);
        }
        u.maxFrameSize = v;
        break;
      case Setting.HEADER_TABLE_SIZE:
        // Our encoder keeps no dynamic table, but a peer that lowered its size expects an update to a size within
        // it at the start of our next block (RFC 7541 section 4.2); 0 fits any.
        if (v < 4096) u.smallerTable = true;
        break;
      default:
        break; // advisory or unknown
    }
  }
  return u;
}
