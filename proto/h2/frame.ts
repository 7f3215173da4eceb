/**
 * HTTP/2 frames (RFC 9113 section 4 and 6): the 9-byte frame header as a view over bytes, and emit helpers for the
 * frames tp's connection sends. Parsing of payloads lives with their handling in connection.ts; what is parsed here
 * is what has a fixed shape (SETTINGS, WINDOW_UPDATE, RST_STREAM, GOAWAY, PING).
 */

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

/** Error codes (RFC 9113 section 7). */
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

const ERROR_NAMES = Object.fromEntries(Object.entries(ErrorCode).map(([k, v]) => [v, k]));

/** "CANCEL", "PROTOCOL_ERROR", ... or the number for a code RFC 9113 does not name. */
export function errorName(code: number): string {
  return ERROR_NAMES[code] ?? `0x${code.toString(16)}`;
}

export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** The client connection preface, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" (RFC 9113 section 3.4). */
export const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
export const HEADER_LENGTH = 9;
/** The smallest SETTINGS_MAX_FRAME_SIZE, which every peer accepts before it says otherwise. */
export const DEFAULT_MAX_FRAME_SIZE = 16_384;
export const MAX_WINDOW = 0x7fff_ffff;
export const DEFAULT_WINDOW = 65_535;

/** The frame header at `offset` of `b` (at least 9 bytes from there). */
export interface FrameHeader {
  length: number;
  type: number;
  flags: number;
  streamId: number;
}

export function parseHeader(b: Uint8Array, offset = 0): FrameHeader {
  return {
    length: (b[offset]! << 16) | (b[offset + 1]! << 8) | b[offset + 2]!,
    type: b[offset + 3]!,
    flags: b[offset + 4]!,
    // The reserved bit is ignored on receipt (section 4.1).
    streamId: ((b[offset + 5]! & 0x7f) << 24 | (b[offset + 6]! << 16) | (b[offset + 7]! << 8) | b[offset + 8]!) >>> 0,
  };
}

export function emitHeader(b: Uint8Array, offset: number, h: FrameHeader): void {
  b[offset] = h.length >>> 16;
  b[offset + 1] = (h.length >>> 8) & 0xff;
  b[offset + 2] = h.length & 0xff;
  b[offset + 3] = h.type;
  b[offset + 4] = h.flags;
  b[offset + 5] = (h.streamId >>> 24) & 0x7f;
  b[offset + 6] = (h.streamId >>> 16) & 0xff;
  b[offset + 7] = (h.streamId >>> 8) & 0xff;
  b[offset + 8] = h.streamId & 0xff;
}

/** One frame: header and payload in one new buffer. */
export function frame(type: number, flags: number, streamId: number, payload?: Uint8Array): Uint8Array {
  const n = payload?.length ?? 0;
  const b = new Uint8Array(HEADER_LENGTH + n);
  emitHeader(b, 0, { length: n, type, flags, streamId });
  if (payload) b.set(payload, HEADER_LENGTH);
  return b;
}

export function settingsFrame(settings: [id: number, value: number][]): Uint8Array {
  const p = new Uint8Array(settings.length * 6);
  const v = new DataView(p.buffer);
  settings.forEach(([id, value], i) => {
    v.setUint16(i * 6, id);
    v.setUint32(i * 6 + 2, value);
  });
  return frame(FrameType.SETTINGS, 0, 0, p);
}

/** The settings of a SETTINGS payload, in order; null when its length is not a multiple of 6. */
export function parseSettings(p: Uint8Array): [id: number, value: number][] | null {
  if (p.length % 6 !== 0) return null;
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const out: [number, number][] = [];
  for (let i = 0; i < p.length; i += 6) out.push([v.getUint16(i), v.getUint32(i + 2)]);
  return out;
}

export function windowUpdateFrame(streamId: number, increment: number): Uint8Array {
  return frame(FrameType.WINDOW_UPDATE, 0, streamId, u32(increment & MAX_WINDOW));
}

export function rstStreamFrame(streamId: number, code: number): Uint8Array {
  return frame(FrameType.RST_STREAM, 0, streamId, u32(code));
}

export function goawayFrame(lastStreamId: number, code: number, debug = ""): Uint8Array {
  const d = new TextEncoder().encode(debug);
  const p = new Uint8Array(8 + d.length);
  p.set(u32(lastStreamId & MAX_WINDOW), 0);
  p.set(u32(code), 4);
  p.set(d, 8);
  return frame(FrameType.GOAWAY, 0, 0, p);
}

export function pingFrame(data: Uint8Array, ack: boolean): Uint8Array {
  return frame(FrameType.PING, ack ? Flag.ACK : 0, 0, data);
}

/** A 32-bit big-endian number at `offset` (the reserved top bit cleared when `mask31`). */
export function readU32(b: Uint8Array, offset: number, mask31 = false): number {
  const n = ((b[offset]! << 24) | (b[offset + 1]! << 16) | (b[offset + 2]! << 8) | b[offset + 3]!) >>> 0;
  return mask31 ? n & MAX_WINDOW : n;
}

function u32(n: number): Uint8Array {
  return new Uint8Array([(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
}
