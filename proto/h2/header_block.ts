/**
 * Header blocks in frames (RFC 9113 sections 6.2 and 6.10). In: one HEADERS frame and the CONTINUATION frames that
 * follow it, padding and priority taken off, joined once END_HEADERS comes, with a bound on what a peer that never
 * sends END_HEADERS can make us hold. Out: a block cut into frames the peer's SETTINGS_MAX_FRAME_SIZE allows.
 */
import { ErrorCode, Flag, frame, FrameType, readU32 } from "./frame.ts";
import { ConnectionError } from "./options.ts";
import { concat } from "../../base/bytes.ts";

/**
 * The largest header block (HEADERS and its CONTINUATIONs, still compressed) accepted: far above what gRPC-web
 * sends, and a bound on what a peer that never sends END_HEADERS can make us hold.
 */
export const MAX_HEADER_BLOCK = 256 * 1024;
/** A flag of our own on a header block: its HEADERS made the stream depend on itself (section 5.3.1). */
export const SELF_DEPENDENT = 0x100;

/** A whole header block: the HEADERS frame's flags (with SELF_DEPENDENT) and the compressed fields. */
export interface HeaderBlock {
  streamId: number;
  flags: number;
  block: Uint8Array;
}

export class HeaderBlockReader {
  #open: { streamId: number; flags: number; parts: Uint8Array[]; bytes: number; continuations: number } | undefined;

  /** `maxContinuations`: CONTINUATION frames allowed after one HEADERS (limits.ts). */
  constructor(readonly maxContinuations: number) {}

  /** Bytes of an open block held until its END_HEADERS (at most MAX_HEADER_BLOCK plus one frame). */
  get buffered(): number {
    return this.#open?.bytes ?? 0;
  }

  /** Whether a block is open: only CONTINUATION frames on its stream may come next (section 6.10). */
  get open(): boolean {
    return this.#open !== undefined;
  }

  /** A HEADERS frame: its block when it carries END_HEADERS, else undefined until the last CONTINUATION. */
  headers(flags: number, id: number, p: Uint8Array): HeaderBlock | undefined {
    if (id === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    let body = stripPadding(flags, p);
    if (flags & Flag.PRIORITY) {
      if (body.length < 5) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS priority too short");
      if (readU32(body, 0, true) === id) flags |= SELF_DEPENDENT;
      body = body.subarray(5);
    }
    if (flags & Flag.END_HEADERS) return { streamId: id, flags, block: body };
    this.#open = { streamId: id, flags, parts: [body.slice()], bytes: body.length, continuations: 0 };
    return undefined;
  }

  /** A CONTINUATION frame: the whole block once END_HEADERS comes. */
  continuation(flags: number, id: number, p: Uint8Array): HeaderBlock | undefined {
    const hb = this.#open;
    if (!hb || hb.streamId !== id) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "Unexpected CONTINUATION");
    if (++hb.continuations > this.maxContinuations) {
      throw new ConnectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        `A header block of over ${this.maxContinuations} CONTINUATION frames`,
      );
    }
    if (p.length > 0) hb.parts.push(p.slice());
    hb.bytes += p.length;
    if (hb.bytes > MAX_HEADER_BLOCK) {
      throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, `A header block over ${MAX_HEADER_BLOCK} bytes`);
    }
    if (!(flags & Flag.END_HEADERS)) return undefined;
    this.#open = undefined;
    return { streamId: id, flags: hb.flags, block: concat(hb.parts) };
  }
}

/** A header block as one HEADERS frame, or HEADERS and CONTINUATIONs of at most `maxFrame` bytes (section 4.3). */
export function headerFrames(id: number, block: Uint8Array, endStream: boolean, maxFrame: number): Uint8Array[] {
  let flags = endStream ? Flag.END_STREAM : 0;
  if (block.length <= maxFrame) return [frame(FrameType.HEADERS, flags | Flag.END_HEADERS, id, block)];
  const frames: Uint8Array[] = [];
  let off = 0;
  let type: number = FrameType.HEADERS;
  while (off < block.length) {
    const part = block.subarray(off, Math.min(block.length, off + maxFrame));
    off += part.length;
    frames.push(frame(type, flags | (off === block.length ? Flag.END_HEADERS : 0), id, part));
    type = FrameType.CONTINUATION;
    flags = 0;
  }
  return frames;
}

/** A DATA or HEADERS payload without its padding (section 6.1); a pad longer than the frame is an error. */
export function stripPadding(flags: number, p: Uint8Array): Uint8Array {
  if (!(flags & Flag.PADDED)) return p;
  if (p.length < 1) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "Padded frame without a pad length");
  const pad = p[0]!;
  if (pad >= p.length) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "Padding longer than the frame");
  return p.subarray(1, p.length - pad);
}
