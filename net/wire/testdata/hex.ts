// Test helpers: hex fixtures to bytes, and output buffers pre-filled with 0xa5 so that an unwritten byte shows.

export function hex(s: string): Uint8Array {
  if (s.length % 2 !== 0 || !/^[0-9a-f]*$/.test(s)) throw new SyntaxError(`Cannot parse hex "${s.slice(0, 20)}..."`);
  const b = new Uint8Array(s.length / 2);
  for (let i = 0; i < b.length; i++) b[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return b;
}

export function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** A buffer of `n` bytes of 0xa5. */
export function filled(n = 2048): Uint8Array {
  return new Uint8Array(n).fill(0xa5);
}

/** The captured packet at `i`, failing loudly if the fixture is shorter than a test expects. */
export function at(list: readonly string[], i: number): Uint8Array {
  const s = list[i];
  if (s === undefined) throw new RangeError(`No captured packet ${i}`);
  return hex(s);
}
