/**
 * How the daemon tells whoever started it what it is doing. In the foreground the lines go to stderr for a person;
 * a background daemon writes JSON lines on stdout to the `tp connect` that started it, which prints them, and
 * stops writing there once it reports `ready` or `error` (that `tp connect` then exits).
 */

export type ProgressEvent =
  | { kind: "stage"; stage: string; message: string }
  | { kind: "ready"; status: unknown; ms: number }
  | { kind: "error"; message: string; exitCode: number };

export interface Progress {
  stage(stage: string, message: string): void;
  ready(status: unknown, ms: number): void;
  error(message: string, exitCode: number): void;
}

/** Progress for a person: one line per stage on stderr. */
export function textProgress(write: (line: string) => void = (l) => console.error(l)): Progress {
  return {
    stage: (_stage, message) => write(`tp: ${message}`),
    ready: (_status, ms) =>
      write(`tp: connected in ${Math.round(ms)} ms; tp status shows the details, tp quit disconnects`),
    error: (message) => write(`tp: ${message}`),
  };
}

/** Progress as JSON lines on a file (the daemon's stdout pipe); silent after ready or error. */
export function jsonProgress(out: { writeSync(p: Uint8Array): number }): Progress {
  let done = false;
  const emit = (e: ProgressEvent) => {
    if (done) return;
    if (e.kind !== "stage") done = true;
    const bytes = new TextEncoder().encode(JSON.stringify(e) + "\n");
    try {
      for (let off = 0; off < bytes.length;) off += out.writeSync(bytes.subarray(off));
    } catch {
      done = true; // the starter went away; the daemon carries on
    }
  };
  return {
    stage: (stage, message) => emit({ kind: "stage", stage, message }),
    ready: (status, ms) => emit({ kind: "ready", status, ms }),
    error: (message, exitCode) => emit({ kind: "error", message, exitCode }),
  };
}
