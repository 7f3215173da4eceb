/**
 * The daemon's control socket: a unix socket in the state directory. A request is one JSON line, the answer is
 * one JSON line, then the connection closes.
 *
 * Who may use it: the user who connected (sudo's SUDO_UID) and root, nobody else, since the socket also carries
 * intercept requests that make root mount volumes. The socket file belongs to that user with mode 0600, and Linux
 * checks write permission on the socket file at connect() (unix(7): "connecting to a stream socket object requires
 * write permission on that socket"); root passes by CAP_DAC_OVERRIDE. Deno offers no SO_PEERCRED, and this is the
 * same check without it. The socket is bound in a directory only root can enter and given its owner and mode there,
 * then renamed into place, so no other user ever finds it with looser permissions.
 */

import { stateAccessError } from "./state.ts";
import type { LogLevel } from "./log_file.ts";
import { errorMessage } from "../../base/error_message.ts";
import { GrpcError, statusName } from "../../proto/grpc_web.ts";

export type ControlRequest =
  /** `compare`: a second `tp connect`'s settings; the answer's `differs` lists what differs (tokens compared here). */
  | { op: "status"; compare?: Record<string, unknown> }
  | { op: "quit" }
  | {
    op: "intercept";
    workload: string;
    appPort: number;
    localPort: number;
    mount?: { dir: string; required: boolean };
  }
  | { op: "leave"; workload: string; appPort?: number }
  | { op: "list"; namespace: string }
  | { op: "loglevel"; level: LogLevel };

const OPS = new Set(["status", "quit", "intercept", "leave", "list", "loglevel"]);

/**
 * `code`: when the failure is the traffic-manager's answer, its gRPC status name ("NOT_FOUND"), for callers to decide
 * by (never by `error`'s words). Absent in answers of a daemon that predates it, and for the daemon's own failures.
 */
export type ControlResponse = { ok: true; result: unknown } | { ok: false; error: string; code?: string };

export type ControlHandler = (req: ControlRequest) => Promise<unknown>;

const MAX_REQUEST = 64 * 1024;

/** Who may use the control socket besides root: the user who connected. */
export interface ControlOwner {
  uid: number;
  gid: number;
}

/**
 * Serves the control socket until `signal` aborts; returns once listening. `owner` (the user who connected) may use
 * it, and root; without one, root only.
 */
export async function serveControl(
  path: string,
  handler: ControlHandler,
  opts: { signal: AbortSignal; owner?: ControlOwner },
): Promise<{ finished: Promise<void> }> {
  const listener = await listenPrivately(path, opts.owner);
  opts.signal.addEventListener("abort", () => listener.close(), { once: true });
  const finished = (async () => {
    const pending = new Set<Promise<void>>();
    try {
      for await (const conn of listener) {
        const p = serveOne(conn, handler).finally(() => pending.delete(p));
        pending.add(p);
      }
    } catch {
      // closed
    }
    await Promise.allSettled(pending);
    await Deno.remove(path).catch(() => {});
  })();
  return { finished };
}

/**
 * Binds the socket in a fresh directory only root can enter, sets its owner and mode 0600 there, then renames it to
 * `path` (replacing a stale socket): from the first instant another user can see it, they cannot connect to it.
 */
async function listenPrivately(path: string, owner: ControlOwner | undefined): Promise<Deno.UnixListener> {
  const dir = path.replace(/\/[^/]*$/, "") || "/";
  const hidden = await Deno.makeTempDir({ dir, prefix: ".control-" }); // mode 0700, root's
  const temp = `${hidden}/s`;
  try {
    const listener = Deno.listen({ transport: "unix", path: temp });
    try {
      await Deno.chmod(temp, 0o600);
      if (owner && owner.uid !== 0) await Deno.chown(temp, owner.uid, owner.gid);
      await Deno.rename(temp, path);
    } catch (e) {
      listener.close();
      throw e;
    }
    return listener;
  } finally {
    await Deno.remove(hidden, { recursive: true }).catch(() => {});
  }
}

async function serveOne(conn: Deno.Conn, handler: ControlHandler): Promise<void> {
  let res: ControlResponse;
  try {
    const line = await readLine(conn, 5000);
    const req = JSON.parse(line) as { op?: unknown };
    if (typeof req.op !== "string" || !OPS.has(req.op)) {
      throw new TypeError(`unknown control operation "${String(req.op)}"`);
    }
    res = { ok: true, result: await handler(req as ControlRequest) };
  } catch (e) {
    res = { ok: false, error: errorMessage(e), ...(e instanceof GrpcError ? { code: statusName(e.code) } : {}) };
  }
  try {
    await writeAll(conn, new TextEncoder().encode(JSON.stringify(res) + "\n"));
  } catch { /* the client left */ }
  try {
    conn.close();
  } catch { /* closed */ }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}

async function readLine(conn: Deno.Conn, timeoutMs: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch { /* closed */ }
  }, timeoutMs);
  try {
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
      total += n;
      if (buf.subarray(0, n).includes(10)) break;
      if (total > MAX_REQUEST) throw new RangeError("control message too long");
    }
  } finally {
    clearTimeout(timer);
  }
  const all = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  const text = new TextDecoder().decode(all);
  const nl = text.indexOf("\n");
  return nl >= 0 ? text.slice(0, nl) : text;
}

/** No daemon answers at the socket: it is missing, or nothing listens (a stale socket after a crash). */
export class NotRunningError extends Error {
  constructor(readonly stale: boolean, message: string) {
    super(message);
    this.name = "NotRunningError";
  }
}

/** The daemon answered a request with a failure. `code`: the manager's gRPC status name, when it was the manager's. */
export class ControlError extends Error {
  constructor(message: string, readonly code: string | undefined) {
    super(message);
    this.name = "ControlError";
  }
}

/**
 * Sends one request to the daemon and returns its result; throws NotRunningError when none answers, ControlError
 * when it answers with a failure.
 */
export async function controlRequest(path: string, req: ControlRequest, timeoutMs = 10_000): Promise<unknown> {
  let conn: Deno.Conn;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new NotRunningError(false, "tp is not connected");
    if (e instanceof Deno.errors.ConnectionRefused) {
      throw new NotRunningError(true, `no tp daemon answers at ${path} (a stale socket)`);
    }
    if (e instanceof Deno.errors.PermissionDenied) throw stateAccessError(path);
    throw e;
  }
  try {
    await writeAll(conn, new TextEncoder().encode(JSON.stringify(req) + "\n"));
    const line = await readLine(conn, timeoutMs);
    if (!line) throw new Error("the tp daemon closed the control connection without an answer");
    const res = JSON.parse(line) as ControlResponse;
    if (!res.ok) throw new ControlError(res.error, res.code);
    return res.result;
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}
