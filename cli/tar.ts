/**
 * A gzip'd tar archive of regular files held in memory (POSIX ustar, IEEE Std 1003.1-2001 "pax" section's ustar
 * header): what `tp gather-logs` writes. Names at most 100 bytes; files 0644, owned by uid/gid 0.
 */

export interface TarFile {
  name: string;
  data: Uint8Array;
}

const BLOCK = 512;

/** The archive's bytes, gzip-compressed (CompressionStream). */
export async function tarGz(files: readonly TarFile[], mtime = new Date()): Promise<Uint8Array> {
  const tar = tarBytes(files, Math.floor(mtime.getTime() / 1000));
  const gz = new Blob([tar as BlobPart]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(gz).arrayBuffer());
}

/** The uncompressed archive: a header and the data (padded to 512 bytes) per file, then two zero blocks. */
export function tarBytes(files: readonly TarFile[], mtimeSeconds: number): Uint8Array {
  const size = files.reduce((n, f) => n + BLOCK + Math.ceil(f.data.length / BLOCK) * BLOCK, 2 * BLOCK);
  const out = new Uint8Array(size);
  let off = 0;
  for (const f of files) {
    out.set(header(f.name, f.data.length, mtimeSeconds), off);
    out.set(f.data, off + BLOCK);
    off += BLOCK + Math.ceil(f.data.length / BLOCK) * BLOCK;
  }
  return out;
}

function header(name: string, size: number, mtime: number): Uint8Array {
  const enc = new TextEncoder();
  const nameBytes = enc.encode(name);
  if (nameBytes.length > 100) throw new RangeError(`tar: the name "${name}" is longer than 100 bytes`);
  const h = new Uint8Array(BLOCK);
  const put = (offset: number, text: string) => h.set(enc.encode(text), offset);
  const octal = (offset: number, width: number, n: number) => put(offset, n.toString(8).padStart(width - 1, "0"));
  h.set(nameBytes, 0);
  octal(100, 8, 0o644); // mode
  octal(108, 8, 0); // uid
  octal(116, 8, 0); // gid
  octal(124, 12, size);
  octal(136, 12, mtime);
  put(148, "        "); // the checksum counts its own field as spaces
  put(156, "0"); // a regular file
  put(257, "ustar\0");
  put(263, "00");
  const sum = h.reduce((a, b) => a + b, 0);
  put(148, `${sum.toString(8).padStart(6, "0")}\0 `);
  return h;
}
