/**
 * Sequence ranges for SACK (RFC 2018): the sender's scoreboard of ranges the peer reported, and the receiver's
 * list of out-of-order blocks it holds. Both keep few ranges (a handful per loss episode), in flat arrays.
 */
import { seqGe, seqGt, seqLe, seqLt, seqMax, seqMin } from "./seq.ts";

/**
 * Ranges a sender's scoreboard keeps. RFC 2018 and RFC 6675 set no bound; each ACK carries at most 4 blocks, but a
 * peer may report a new disjoint one in every ACK, and each `add` walks the ranges: the bound keeps both small. A
 * block that would need a range beyond it is ignored (and counted): SACK is advisory (RFC 2018 section 8), so the
 * sender at worst retransmits bytes the peer holds. 32 is the receiver's own default (`maxOooBlocks`).
 */
export const MAX_SACK_RANGES = 32;

/** Sender side: disjoint, sorted [start, end) ranges above SND.UNA that the peer has selectively acknowledged. */
export class SackScoreboard {
  /** Flat pairs: starts at even, ends at odd indices. */
  readonly #r: number[] = [];

  constructor(readonly maxRanges = MAX_SACK_RANGES) {}

  get size(): number {
    return this.#r.length >> 1;
  }

  /** The highest acknowledged sequence (end of the last range), or `fallback` if none. */
  highest(fallback: number): number {
    return this.#r.length === 0 ? fallback : this.#r[this.#r.length - 1]!;
  }

  clear(): void {
    this.#r.length = 0;
  }

  /**
   * Records [start, end), merging with overlapping or touching ranges. Returns false, recording nothing, when the
   * block touches no range and `maxRanges` are kept already.
   */
  add(start: number, end: number): boolean {
    const r = this.#r;
    let i = 0;
    while (i < r.length && seqLt(r[i + 1]!, start)) i += 2;
    let j = i;
    while (j < r.length && seqLe(r[j]!, end)) {
      start = seqMin(start, r[j]!);
      end = seqMax(end, r[j + 1]!);
      j += 2;
    }
    if (j === i && r.length >= 2 * this.maxRanges) return false;
    r.splice(i, j - i, start, end);
    return true;
  }

  /** Forgets everything below `una` (it has been cumulatively acknowledged). */
  pruneBelow(una: number): void {
    const r = this.#r;
    let k = 0;
    while (k < r.length && seqLe(r[k + 1]!, una)) k += 2;
    if (k > 0) r.splice(0, k);
    if (r.length > 0 && seqLt(r[0]!, una)) r[0] = una;
  }

  /** If `s` is covered by a range, that range's end; else `s`. */
  skip(s: number): number {
    const r = this.#r;
    for (let i = 0; i < r.length; i += 2) {
      if (seqLe(r[i]!, s) && seqLt(s, r[i + 1]!)) return r[i + 1]!;
      if (seqGt(r[i]!, s)) break;
    }
    return s;
  }

  /** The start of the first range beginning after `s`, or `fallback`. */
  nextStart(s: number, fallback: number): number {
    const r = this.#r;
    for (let i = 0; i < r.length; i += 2) if (seqGt(r[i]!, s)) return r[i]!;
    return fallback;
  }

  /** Bytes covered in total. */
  bytes(): number {
    let n = 0;
    for (let i = 0; i < this.#r.length; i += 2) n += (this.#r[i + 1]! - this.#r[i]!) >>> 0;
    return n;
  }
}

/**
 * Receiver side: out-of-order blocks above RCV.NXT, with the recency RFC 2018 section 4 asks the SACK option to
 * follow (the block holding the latest segment first).
 */
export class OooBlocks {
  readonly #start: number[] = [];
  readonly #end: number[] = [];
  readonly #stamp: number[] = [];
  #clock = 0;
  readonly maxBlocks: number;

  constructor(maxBlocks: number) {
    this.maxBlocks = maxBlocks;
  }

  get size(): number {
    return this.#start.length;
  }

  clear(): void {
    this.#start.length = this.#end.length = this.#stamp.length = 0;
  }

  /** Would [start, end) need a new block beyond the limit? */
  wouldOverflow(start: number, end: number): boolean {
    if (this.#start.length < this.maxBlocks) return false;
    for (let i = 0; i < this.#start.length; i++) {
      if (seqLe(this.#start[i]!, end) && seqGe(this.#end[i]!, start)) return false;
    }
    return true;
  }

  /** Records [start, end), merging overlapping or touching blocks; the merged block becomes the most recent. */
  add(start: number, end: number): void {
    const s = this.#start, e = this.#end, t = this.#stamp;
    let i = 0;
    while (i < s.length && seqLt(e[i]!, start)) i++;
    let j = i;
    while (j < s.length && seqLe(s[j]!, end)) {
      start = seqMin(start, s[j]!);
      end = seqMax(end, e[j]!);
      j++;
    }
    s.splice(i, j - i, start);
    e.splice(i, j - i, end);
    t.splice(i, j - i, ++this.#clock);
  }

  /** If the first block starts at or before `rcvNxt`, removes it and returns its end; else returns `rcvNxt`. */
  popContiguous(rcvNxt: number): number {
    if (this.#start.length === 0 || seqGt(this.#start[0]!, rcvNxt)) return rcvNxt;
    const end = seqMax(this.#end[0]!, rcvNxt);
    this.#start.shift();
    this.#end.shift();
    this.#stamp.shift();
    return end;
  }

  /** Whether [start, end) is already wholly held. */
  covers(start: number, end: number): boolean {
    for (let i = 0; i < this.#start.length; i++) {
      if (seqLe(this.#start[i]!, start) && seqGe(this.#end[i]!, end)) return true;
    }
    return false;
  }

  /** Up to `max` blocks, most recent first (RFC 2018 section 4). */
  sackBlocks(max: number): Array<readonly [number, number]> {
    const idx = this.#start.map((_, i) => i).sort((a, b) => this.#stamp[b]! - this.#stamp[a]!);
    const out: Array<readonly [number, number]> = [];
    for (let k = 0; k < idx.length && k < max; k++) out.push([this.#start[idx[k]!]!, this.#end[idx[k]!]!]);
    return out;
  }
}
