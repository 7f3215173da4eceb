/**
 * A minimal D-Bus client, enough to drive org.freedesktop.resolve1: the SASL EXTERNAL handshake over a Unix socket
 * and method calls with a timeout, on the wire format of dbus_wire.ts (re-exported here). No signals, match rules,
 * fd passing or services of our own.
 */
import {
  DBusHeaderView,
  DBusValue,
  emitMessage,
  FIXED_HEADER_LEN,
  LITTLE,
  MessageType,
  parseHeader,
  unmarshal,
  utf8,
} from "./dbus_wire.ts";
import { errorMessage } from "../../base/error_message.ts";
import { concat } from "../../base/bytes.ts";

export * from "./dbus_wire.ts";

// ---------------------------------------------------------------------------------------------------------------------
// Addresses and authentication ("Server Addresses", "Authentication Protocol")

/** "Well-known Message Bus Instances": the system bus's default address. */
export const DEFAULT_SYSTEM_BUS_ADDRESS = "unix:path=/run/dbus/system_bus_socket";

/** The system bus's address: $DBUS_SYSTEM_BUS_ADDRESS, else the default. */
export function systemBusAddress(env: string | undefined = Deno.env.get("DBUS_SYSTEM_BUS_ADDRESS")): string {
  return env || DEFAULT_SYSTEM_BUS_ADDRESS;
}

/**
 * The socket path of the first `unix:path=` entry of an address ("unix:path=/run/bus,guid=..;tcp:..."), with its
 * %-escapes decoded; null when there is none (tp does not speak tcp: or abstract sockets).
 */
export function unixSocketPath(address: string): string | null {
  for (const entry of address.split(";")) {
    const colon = entry.indexOf(":");
    if (entry.slice(0, colon) !== "unix") continue;
    for (const kv of entry.slice(colon + 1).split(",")) {
      const eq = kv.indexOf("=");
      if (kv.slice(0, eq) !== "path") continue;
      try {
        return decodeURIComponent(kv.slice(eq + 1));
      } catch {
        return null;
      }
    }
  }
  return null;
}

/**
 * What a client sends first: a NUL byte (where credentials may be passed), then "AUTH EXTERNAL" with the uid as
 * ASCII decimal, hex-encoded ("AUTH EXTERNAL 30" for uid 0), and CRLF.
 */
export function saslAuthExternal(uid: number): Uint8Array {
  const hex = [...utf8.encode(String(uid))].map((b) => b.toString(16).padStart(2, "0")).join("");
  return utf8.encode(`\0AUTH EXTERNAL ${hex}\r\n`);
}

/** The handshake's last line, after the server's "OK <guid>". */
const SASL_BEGIN = utf8.encode("BEGIN\r\n");
const MAX_SASL_LINE = 16 * 1024;

// ---------------------------------------------------------------------------------------------------------------------
// The connection

/** An ERROR reply (or, with the names libdbus uses, a call's timeout or a lost connection). */
export class DBusError extends Error {
  override name = "DBusError";
  constructor(readonly errorName: string, readonly detail: string) {
    super(detail ? `${errorName}: ${detail}` : errorName);
  }
}

/** The bus could not be reached: no socket, refused, authentication rejected, or no answer in time. */
export class DBusConnectError extends Error {
  override name = "DBusConnectError";
}

export const NO_REPLY = "org.freedesktop.DBus.Error.NoReply";
export const DISCONNECTED = "org.freedesktop.DBus.Error.Disconnected";

/** A method call; the reply's body is the result. */
export interface DBusCall {
  destination: string;
  path: string;
  interface: string;
  member: string;
  /** The body's signature; default "" (no arguments). */
  signature?: string;
  body?: readonly unknown[];
}

export interface DBusConnectOptions {
  /** Bounds connecting (handshake and Hello), and is each call's default timeout. Default 5000 ms. */
  timeoutMs?: number;
}

interface Pending {
  resolve: (body: DBusValue[]) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

const DEFAULT_TIMEOUT_MS = 5000;

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}

/** Sends the AUTH line, reads the answer, sends BEGIN. Returns any bytes read past the answer's line. */
async function authenticate(conn: Deno.Conn, uid: number): Promise<Uint8Array> {
  await writeAll(conn, saslAuthExternal(uid));
  let buf: Uint8Array = new Uint8Array(0);
  const chunk = new Uint8Array(4096);
  let end: number;
  while ((end = buf.findIndex((b, i) => b === 0x0d && buf[i + 1] === 0x0a)) < 0) {
    if (buf.length > MAX_SASL_LINE) throw new Error("the server's authentication answer is too long");
    const n = await conn.read(chunk);
    if (n === null) throw new Error("the server closed the connection during authentication");
    buf = concat([buf, chunk.subarray(0, n)]);
  }
  const line = new TextDecoder().decode(buf.subarray(0, end));
  if (line.startsWith("REJECTED")) {
    throw new Error(
      `the bus rejected EXTERNAL authentication as uid ${uid} (it offers: ${line.slice(9) || "nothing"})`,
    );
  }
  if (!line.startsWith("OK ")) throw new Error(`unexpected answer to AUTH: "${line}"`);
  await writeAll(conn, SASL_BEGIN);
  return buf.subarray(end + 2);
}

/** One connection to a bus, for method calls. Replies are matched by serial; other messages are ignored. */
export class DBusConnection {
  readonly #conn: Deno.Conn;
  readonly #timeoutMs: number;
  readonly #pending = new Map<number, Pending>();
  #serial = 0;
  #closed = false;
  #writing: Promise<void> = Promise.resolve();
  #uniqueName = "";
  /** Settles when the read loop has ended (after close(), or when the bus goes away). */
  readonly done: Promise<void>;

  private constructor(conn: Deno.Conn, initial: Uint8Array, timeoutMs: number) {
    this.#conn = conn;
    this.#timeoutMs = timeoutMs;
    this.done = this.#readLoop(initial);
  }

  /** The name the bus gave this connection (Hello). */
  get uniqueName(): string {
    return this.#uniqueName;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Connects to `address` (default: the system bus), authenticates as this process's uid and says Hello. Throws
   * DBusConnectError when the bus cannot be reached that way.
   */
  static async connect(address = systemBusAddress(), options: DBusConnectOptions = {}): Promise<DBusConnection> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const path = unixSocketPath(address);
    if (path === null) throw new DBusConnectError(`Cannot connect to D-Bus at "${address}": no unix:path= in it`);
    let conn: Deno.Conn;
    try {
      conn = await Deno.connect({ transport: "unix", path });
    } catch (e) {
      throw new DBusConnectError(`Cannot connect to D-Bus at ${path}: ${errorMessage(e)}`, { cause: e });
    }
    const uid = Deno.uid() ?? 0;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      conn.close();
    }, timeoutMs);
    let initial: Uint8Array;
    try {
      initial = await authenticate(conn, uid);
    } catch (e) {
      if (!timedOut) conn.close();
      const why = timedOut ? `no answer to authentication within ${timeoutMs} ms` : errorMessage(e);
      throw new DBusConnectError(`Cannot connect to D-Bus at ${path}: ${why}`, { cause: e });
    } finally {
      clearTimeout(timer);
    }
    const c = new DBusConnection(conn, initial, timeoutMs);
    try {
      const [name] = await c.call({
        destination: "org.freedesktop.DBus",
        path: "/org/freedesktop/DBus",
        interface: "org.freedesktop.DBus",
        member: "Hello",
      });
      if (typeof name !== "string") throw new Error("Hello returned no name");
      c.#uniqueName = name;
    } catch (e) {
      c.close();
      await c.done;
      throw new DBusConnectError(`Cannot connect to D-Bus at ${path}: Hello failed: ${errorMessage(e)}`, { cause: e });
    }
    return c;
  }

  /**
   * Calls a method. Resolves with the METHOD_RETURN's body; rejects with DBusError for an ERROR reply, for no reply
   * within the timeout (NoReply) and for a lost connection (Disconnected); TypeError for arguments that do not fit
   * the signature.
   */
  call(msg: DBusCall, options: { timeoutMs?: number } = {}): Promise<DBusValue[]> {
    const what = `${msg.interface}.${msg.member}`;
    if (this.#closed) {
      return Promise.reject(new DBusError(DISCONNECTED, `cannot call ${what}: the connection is closed`));
    }
    this.#serial = this.#serial >= 0xffffffff ? 1 : this.#serial + 1;
    const serial = this.#serial;
    let bytes: Uint8Array;
    try {
      bytes = emitMessage({
        type: MessageType.METHOD_CALL,
        flags: 0,
        serial,
        path: msg.path,
        interface: msg.interface,
        member: msg.member,
        destination: msg.destination,
        signature: msg.signature ?? "",
        body: msg.body ?? [],
      });
    } catch (e) {
      return Promise.reject(e);
    }
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(serial);
        reject(new DBusError(NO_REPLY, `no reply to ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(serial, { resolve, reject, timer });
      this.#writing = this.#writing.then(() => writeAll(this.#conn, bytes)).catch((e) => {
        this.#shutdown(new DBusError(DISCONNECTED, `cannot send ${what}: ${errorMessage(e)}`));
      });
    });
  }

  /** Closes the socket; pending calls reject with Disconnected. Await `done` for the read loop to end. */
  close(): void {
    this.#shutdown(new DBusError(DISCONNECTED, "the connection was closed"));
  }

  #shutdown(reason: DBusError): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* closed already */ }
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(reason);
    }
    this.#pending.clear();
  }

  async #readLoop(initial: Uint8Array): Promise<void> {
    let buf = initial;
    const chunk = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        while (buf.length >= FIXED_HEADER_LEN) {
          const len = DBusHeaderView.newChecked(buf).messageLength;
          if (buf.length < len) break;
          this.#dispatch(buf.subarray(0, len));
          buf = buf.subarray(len);
        }
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        buf = concat([buf, chunk.subarray(0, n)]);
      }
      this.#shutdown(new DBusError(DISCONNECTED, "the bus closed the connection"));
    } catch (e) {
      this.#shutdown(new DBusError(DISCONNECTED, `the connection failed: ${errorMessage(e)}`));
    }
  }

  #dispatch(bytes: Uint8Array): void {
    const m = parseHeader(bytes);
    if (m.type !== MessageType.METHOD_RETURN && m.type !== MessageType.ERROR) return; // signals, calls to us
    const p = this.#pending.get(m.replySerial!);
    if (!p) return; // a reply that timed out
    this.#pending.delete(m.replySerial!);
    clearTimeout(p.timer);
    let body: DBusValue[];
    try {
      body = unmarshal(m.signature, m.bodyBytes, bytes[0] === LITTLE);
    } catch (e) {
      p.reject(e as Error);
      return;
    }
    if (m.type === MessageType.METHOD_RETURN) p.resolve(body);
    else p.reject(new DBusError(m.errorName!, typeof body[0] === "string" ? body[0] : ""));
  }
}
