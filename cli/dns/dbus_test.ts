import assert from "node:assert/strict";
import {
  DBusConnectError,
  DBusConnection,
  DBusError,
  DBusHeaderView,
  DBusVariant,
  DEFAULT_SYSTEM_BUS_ADDRESS,
  DISCONNECTED,
  emitMessage,
  marshal,
  MessageType,
  NO_REPLY,
  parseMessage,
  parseSignature,
  type ReceivedMessage,
  saslAuthExternal,
  systemBusAddress,
  typeSignature,
  unixSocketPath,
  unmarshal,
} from "./dbus.ts";

/** Bytes from hex ("6c 01"), or from text in quotes ('"abc"': its ASCII), concatenated. */
function bytes(...parts: string[]): Uint8Array {
  const out: number[] = [];
  for (const p of parts) {
    if (p.startsWith('"')) out.push(...new TextEncoder().encode(p.slice(1, -1)));
    else out.push(...p.split(/\s+/).filter(Boolean).map((h) => parseInt(h, 16)));
  }
  return new Uint8Array(out);
}

const RESOLVE1 = {
  destination: "org.freedesktop.resolve1",
  path: "/org/freedesktop/resolve1",
  interface: "org.freedesktop.resolve1.Manager",
};

/**
 * SetLinkDNS(7, [(AF_INET, 198.19.0.255)]) as serial 2, derived by hand from the specification's "Message Format"
 * and "Marshaling" sections. Offsets are from the message's start. (GLib's GDBusMessage builds the same 204 bytes
 * with the fields in another order; the body is identical.)
 */
const SET_LINK_DNS = bytes(
  // Fixed header: 'l' (little-endian), METHOD_CALL, no flags, protocol version 1.
  "6c 01 00 01",
  "14 00 00 00", // body length: 20
  "02 00 00 00", // serial: 2
  "a5 00 00 00", // header fields, a(yv): 165 bytes from offset 16 (structs are 8-aligned; 16 already is)
  // 16: PATH (1); variant signature "o" (length byte 1, 'o', NUL); at 20 the path's uint32 length 25.
  "01 01 6f 00",
  "19 00 00 00",
  '"/org/freedesktop/resolve1"',
  "00", // ends at 50
  "00 00 00 00 00 00", // the next struct at 56
  // 56: INTERFACE (2), "s", length 32.
  "02 01 73 00",
  "20 00 00 00",
  '"org.freedesktop.resolve1.Manager"',
  "00", // ends at 97
  "00 00 00 00 00 00 00", // to 104
  // 104: MEMBER (3), "s", length 10.
  "03 01 73 00",
  "0a 00 00 00",
  '"SetLinkDNS"',
  "00", // ends at 123
  "00 00 00 00 00", // to 128
  // 128: DESTINATION (6), "s", length 24.
  "06 01 73 00",
  "18 00 00 00",
  '"org.freedesktop.resolve1"',
  "00", // ends at 161
  "00 00 00 00 00 00 00", // to 168
  // 168: SIGNATURE (8), "g": a one-byte length (7), no alignment.
  "08 01 67 00",
  "07",
  '"ia(iay)"',
  "00", // ends at 181 = 16 + 165
  "00 00 00", // "The header ends after its alignment padding to an 8-boundary": the body starts at 184
  // Body (offsets from 184, itself 8-aligned): i = 7.
  "07 00 00 00",
  // a(iay): the elements' length, 12 bytes, counted from the first element, which starts at the struct alignment
  // (8, no padding needed here).
  "0c 00 00 00",
  "02 00 00 00", // (iay) at 8: i = AF_INET (2)
  "04 00 00 00", // ay: 4 bytes
  "c6 13 00 ff", // 198.19.0.255
);

Deno.test("emitMessage() builds SetLinkDNS(ia(iay)) for link 7 and 198.19.0.255 byte for byte as the spec says", () => {
  const m = {
    type: MessageType.METHOD_CALL,
    flags: 0,
    serial: 2,
    ...RESOLVE1,
    member: "SetLinkDNS",
    signature: "ia(iay)",
    body: [7, [[2, new Uint8Array([198, 19, 0, 255])]]],
  };
  const out = emitMessage(m);
  assert.equal(out.length, 204);
  assert.deepEqual(out, SET_LINK_DNS);
  const h = DBusHeaderView.newChecked(out);
  assert.deepEqual([h.type, h.serial, h.bodyLength, h.fieldsLength, h.bodyOffset, h.messageLength], [
    1,
    2,
    20,
    165,
    184,
    204,
  ]);
  assert.deepEqual(parseMessage(out), m);
  // number[] for ay is accepted too.
  assert.deepEqual(emitMessage({ ...m, body: [7, [[2, [198, 19, 0, 255]]]] }), SET_LINK_DNS);
});

Deno.test("marshal() aligns nested arrays of structs, and pads an empty array to its element's alignment", () => {
  const sig = "a(a(yt)y)";
  const values = [[[[[3, 4n]], 1], [[], 2]]];
  const expected = bytes(
    "29 00 00 00", // 0: outer array: 41 bytes of elements, counted from 8
    "00 00 00 00", // 4: padding to the struct's 8-alignment, not counted in the length
    "10 00 00 00", // 8: first struct; its a(yt): 16 bytes from 16
    "00 00 00 00", // 12: padding to 16
    "03 00 00 00 00 00 00 00", // 16: (yt): y = 3, padding to 24
    "04 00 00 00 00 00 00 00", // 24: t = 4
    "01", // 32: y = 1
    "00 00 00 00 00 00 00", // 33: padding to the second struct at 40
    "00 00 00 00", // 40: its a(yt) is empty...
    "00 00 00 00", // 44: ...but padded to 48 all the same
    "02", // 48: y = 2; the outer array ends at 49 = 8 + 41
  );
  assert.deepEqual(marshal(sig, values), expected);
  assert.deepEqual(unmarshal(sig, expected), values);
});

Deno.test("marshal() and unmarshal() round-trip every basic type, dicts and variants", () => {
  const sig = "ybnqiuxtdsoga{sv}v";
  const values = [
    255,
    true,
    -2,
    65535,
    -7,
    0xffffffff,
    -(2n ** 63n),
    2n ** 64n - 1n,
    0.5,
    "grüße",
    "/org/x_1",
    "a{sv}",
    new Map([["k", new DBusVariant("as", ["a", "b"])]]),
    new DBusVariant("(ib)", [1, false]),
  ];
  const out = marshal(sig, values);
  assert.deepEqual(unmarshal(sig, out), values);
  // Sent as a number when it is a safe integer, read back as a bigint.
  assert.deepEqual(unmarshal("x", marshal("x", [-5])), [-5n]);
  // A dict may be given as pairs.
  assert.deepEqual(marshal("a{qs}", [[[1, "a"]]]), marshal("a{qs}", [new Map([[1, "a"]])]));
});

Deno.test("marshal() refuses values that do not fit the signature, and parseSignature() bad signatures", () => {
  assert.throws(() => marshal("y", [256]), RangeError);
  assert.throws(() => marshal("i", [2 ** 31]), RangeError);
  assert.throws(() => marshal("t", [-1n]), RangeError);
  assert.throws(() => marshal("i", ["7"]), /Cannot marshal "7" as D-Bus type "i"/);
  assert.throws(() => marshal("b", [1]), TypeError);
  assert.throws(() => marshal("o", ["org/x"]), /object path/);
  assert.throws(() => marshal("(is)", [[1]]), TypeError);
  assert.throws(() => marshal("v", [1]), TypeError);
  assert.throws(() => marshal("ii", [1]), /2 types but 1 values/);
  for (const bad of ["a", "(i", "()", "a{vs}", "a{sss}", "{ss}", "ih", "i)", "a".repeat(33) + "i"]) {
    assert.throws(() => parseSignature(bad), SyntaxError, bad);
  }
  assert.deepEqual(parseSignature("ia(sb)").map(typeSignature), ["i", "a(sb)"]);
});

/** dbus-daemon's reply to Hello, captured from dbus-daemon 1.14 on its socket. */
const HELLO_REPLY = bytes(
  "6c 02 01 01", // 'l', METHOD_RETURN, flags NO_REPLY_EXPECTED, version 1
  "09 00 00 00", // body: 9 bytes
  "01 00 00 00", // serial 1
  "3d 00 00 00", // fields: 61 bytes
  "06 01 73 00 04 00 00 00",
  '":1.4"',
  "00 00 00 00", // DESTINATION ":1.4", padding
  "05 01 75 00 01 00 00 00", // REPLY_SERIAL 1
  "08 01 67 00 01 73 00 00", // SIGNATURE "s", padding
  "07 01 73 00 14 00 00 00",
  '"org.freedesktop.DBus"',
  "00", // SENDER; the fields end at 77
  "00 00 00", // the body at 80
  "04 00 00 00",
  '":1.4"',
  "00", // s ":1.4"
);

/** python-dbus's ERROR for a method that raised DBusException("boom", name=...LinkBusy), captured via dbus-daemon. */
const LINK_BUSY_ERROR = bytes(
  "6c 03 01 01", // 'l', ERROR, NO_REPLY_EXPECTED, version 1
  "09 00 00 00", // body: 9 bytes
  "0c 00 00 00", // serial 12
  "5d 00 00 00", // fields: 93 bytes
  "06 01 73 00 04 00 00 00",
  '":1.4"',
  "00 00 00 00", // DESTINATION
  "04 01 73 00 21 00 00 00",
  '"org.freedesktop.resolve1.LinkBusy"',
  "00 00 00 00 00 00 00", // ERROR_NAME
  "05 01 75 00 02 00 00 00", // REPLY_SERIAL 2
  "08 01 67 00 01 73 00 00", // SIGNATURE "s"
  "07 01 73 00 04 00 00 00",
  '":1.1"',
  "00", // SENDER; the fields end at 109
  "00 00 00", // the body at 112
  "04 00 00 00",
  '"boom"',
  "00",
);

Deno.test("parseMessage() reads a METHOD_RETURN and an ERROR captured from a real bus", () => {
  assert.deepEqual(parseMessage(HELLO_REPLY), {
    type: MessageType.METHOD_RETURN,
    flags: 1,
    serial: 1,
    destination: ":1.4",
    replySerial: 1,
    sender: "org.freedesktop.DBus",
    signature: "s",
    body: [":1.4"],
  });
  assert.deepEqual(parseMessage(LINK_BUSY_ERROR), {
    type: MessageType.ERROR,
    flags: 1,
    serial: 12,
    destination: ":1.4",
    errorName: "org.freedesktop.resolve1.LinkBusy",
    replySerial: 2,
    sender: ":1.1",
    signature: "s",
    body: ["boom"],
  });
});

Deno.test("parseMessage() reads big-endian messages", () => {
  const be = bytes(
    "42 02 00 01", // 'B', METHOD_RETURN
    "00 00 00 09", // body: 9 bytes
    "00 00 00 07", // serial 7
    "00 00 00 0f", // fields: 15 bytes
    "05 01 75 00 00 00 00 03", // REPLY_SERIAL 3
    "08 01 67 00 01 73 00", // SIGNATURE "s"; the fields end at 31
    "00", // the body at 32
    "00 00 00 04",
    '":1.4"',
    "00",
  );
  const m = parseMessage(be);
  assert.deepEqual([m.serial, m.replySerial, m.body], [7, 3, [":1.4"]]);
});

Deno.test("parseMessage() rejects truncated messages, non-zero padding and a missing reply serial", () => {
  assert.throws(() => parseMessage(HELLO_REPLY.subarray(0, 88)), SyntaxError);
  const padded = HELLO_REPLY.slice();
  padded[29] = 1; // padding after DESTINATION
  assert.throws(() => parseMessage(padded), /padding byte at 29 is not zero/);
  const noReplySerial = HELLO_REPLY.slice();
  noReplySerial[32] = 0x55; // REPLY_SERIAL -> an unknown field code, which is ignored
  assert.throws(() => parseMessage(noReplySerial), /without replySerial/);
  const bool = bytes("02 00 00 00");
  assert.throws(() => unmarshal("b", bool), /a boolean is 2/);
  const badOrder = HELLO_REPLY.slice();
  badOrder[0] = 0x4c;
  assert.throws(() => DBusHeaderView.newChecked(badOrder), /byte order mark 0x4c/);
});

Deno.test("saslAuthExternal() sends a NUL, then the uid's ASCII decimal digits in hex", () => {
  const ascii = (s: string) => new TextEncoder().encode(s);
  assert.deepEqual(saslAuthExternal(0), new Uint8Array([0, ...ascii("AUTH EXTERNAL 30\r\n")]));
  assert.deepEqual(saslAuthExternal(1000), new Uint8Array([0, ...ascii("AUTH EXTERNAL 31303030\r\n")]));
});

Deno.test("systemBusAddress() and unixSocketPath() read the address format", () => {
  assert.equal(systemBusAddress(undefined), DEFAULT_SYSTEM_BUS_ADDRESS);
  assert.equal(systemBusAddress("unix:path=/x"), "unix:path=/x");
  assert.equal(unixSocketPath(DEFAULT_SYSTEM_BUS_ADDRESS), "/run/dbus/system_bus_socket");
  assert.equal(unixSocketPath("tcp:host=a,port=1;unix:guid=00,path=/tmp/a%20b"), "/tmp/a b");
  assert.equal(unixSocketPath("unix:abstract=/tmp/x"), null);
});

/** A scripted bus on a Unix socket in a temp dir: it reads lines and messages and sends what a test tells it. */
class FakeBus {
  #buf = new Uint8Array(0);
  #chunk = new Uint8Array(4096);
  conn: Deno.Conn | null = null;

  private constructor(readonly dir: string, readonly listener: Deno.Listener) {}

  static async start(): Promise<FakeBus> {
    const dir = await Deno.makeTempDir({ prefix: "tp-dbus-" });
    return new FakeBus(dir, Deno.listen({ transport: "unix", path: `${dir}/bus` }));
  }

  get address(): string {
    return `unix:path=${this.dir}/bus`;
  }

  async accept(): Promise<void> {
    this.conn = await this.listener.accept();
  }

  async #fill(): Promise<boolean> {
    const n = await this.conn!.read(this.#chunk);
    if (n === null) return false;
    const b = new Uint8Array(this.#buf.length + n);
    b.set(this.#buf);
    b.set(this.#chunk.subarray(0, n), this.#buf.length);
    this.#buf = b;
    return true;
  }

  async line(): Promise<string> {
    let end;
    while ((end = new TextDecoder().decode(this.#buf).indexOf("\r\n")) < 0) {
      if (!await this.#fill()) throw new Error("EOF");
    }
    const line = new TextDecoder().decode(this.#buf.subarray(0, end));
    this.#buf = this.#buf.slice(end + 2);
    return line;
  }

  async message(): Promise<ReceivedMessage> {
    for (;;) {
      if (this.#buf.length >= 16) {
        const len = DBusHeaderView.newChecked(this.#buf).messageLength;
        if (this.#buf.length >= len) {
          const m = parseMessage(this.#buf.subarray(0, len));
          this.#buf = this.#buf.slice(len);
          return m;
        }
      }
      if (!await this.#fill()) throw new Error("EOF");
    }
  }

  async send(b: Uint8Array | string): Promise<void> {
    const bytes = typeof b === "string" ? new TextEncoder().encode(b) : b;
    for (let o = 0; o < bytes.length;) o += await this.conn!.write(bytes.subarray(o));
  }

  /** Authenticates the client, reads Hello and answers it, after a signal and a stray reply. */
  async handshake(): Promise<void> {
    await this.accept();
    const hex = [...new TextEncoder().encode(String(Deno.uid()))].map((b) => b.toString(16)).join("");
    assert.equal(await this.line(), `\0AUTH EXTERNAL ${hex}`);
    await this.send("OK 0123456789abcdef0123456789abcdef\r\n");
    assert.equal(await this.line(), "BEGIN");
    const hello = await this.message();
    assert.equal(hello.member, "Hello");
    await this.send(emitMessage({
      type: MessageType.SIGNAL,
      flags: 1,
      serial: 1,
      path: "/org/freedesktop/DBus",
      interface: "org.freedesktop.DBus",
      member: "NameAcquired",
      signature: "s",
      body: [":1.7"],
    }));
    await this.send(emitMessage({
      type: MessageType.METHOD_RETURN,
      flags: 1,
      serial: 2,
      replySerial: hello.serial + 100,
      signature: "s",
      body: ["not for you"],
    }));
    await this.reply(hello, "s", [":1.7"]);
  }

  async reply(call: ReceivedMessage, signature: string, body: unknown[]): Promise<void> {
    await this.send(
      emitMessage({ type: MessageType.METHOD_RETURN, flags: 1, serial: 9, replySerial: call.serial, signature, body }),
    );
  }

  async close(): Promise<void> {
    this.conn?.close();
    this.listener.close();
    await Deno.remove(this.dir, { recursive: true });
  }
}

Deno.test("DBusConnection says Hello, skips signals and stray replies, and maps ERROR replies", async () => {
  const bus = await FakeBus.start();
  try {
    const server = bus.handshake();
    const c = await DBusConnection.connect(bus.address, { timeoutMs: 2000 });
    await server;
    assert.equal(c.uniqueName, ":1.7");

    const ok = c.call({ ...RESOLVE1, member: "SetLinkDNSSEC", signature: "is", body: [7, "no"] });
    const call = await bus.message();
    assert.deepEqual([call.member, call.destination, call.body], ["SetLinkDNSSEC", RESOLVE1.destination, [7, "no"]]);
    await bus.reply(call, "", []);
    assert.deepEqual(await ok, []);

    const failing = c.call({ ...RESOLVE1, member: "SetLinkDomains", signature: "ia(sb)", body: [7, []] });
    const call2 = await bus.message();
    assert.equal(call2.serial, 3);
    await bus.send(LINK_BUSY_ERROR); // an ERROR for serial 2, answered already: ignored
    await bus.send(emitMessage({
      type: MessageType.ERROR,
      flags: 1,
      serial: 10,
      replySerial: call2.serial,
      errorName: "org.freedesktop.resolve1.LinkBusy",
      signature: "s",
      body: ["boom"],
    }));
    const err = await failing.then(() => null, (e) => e);
    assert.ok(err instanceof DBusError);
    assert.deepEqual([err.errorName, err.detail, err.message], [
      "org.freedesktop.resolve1.LinkBusy",
      "boom",
      "org.freedesktop.resolve1.LinkBusy: boom",
    ]);

    await assert.rejects(
      c.call({ ...RESOLVE1, member: "RevertLink", signature: "i", body: [7] }, { timeoutMs: 50 }),
      (e: DBusError) => e.errorName === NO_REPLY && /no reply to .*RevertLink within 50 ms/.test(e.message),
    );
    const pending = c.call({ ...RESOLVE1, member: "RevertLink", signature: "i", body: [7] });
    c.close();
    await assert.rejects(pending, (e: DBusError) => e.errorName === DISCONNECTED);
    await c.done;
    await assert.rejects(c.call({ ...RESOLVE1, member: "X" }), (e: DBusError) => e.errorName === DISCONNECTED);
  } finally {
    await bus.close();
  }
});

Deno.test("DBusConnection rejects pending calls when the bus hangs up", async () => {
  const bus = await FakeBus.start();
  try {
    const server = bus.handshake();
    const c = await DBusConnection.connect(bus.address);
    await server;
    const pending = c.call({ ...RESOLVE1, member: "RevertLink", signature: "i", body: [7] });
    await bus.message();
    bus.conn!.close();
    bus.conn = null;
    await assert.rejects(pending, /Disconnected: the bus closed the connection/);
    await c.done;
  } finally {
    await bus.close();
  }
});

Deno.test("connect() throws DBusConnectError: no socket, authentication rejected or unanswered", async () => {
  const bus = await FakeBus.start();
  try {
    await assert.rejects(
      DBusConnection.connect(`unix:path=${bus.dir}/nothing`),
      (e) => e instanceof DBusConnectError && e.message.includes(`${bus.dir}/nothing`),
    );
    await assert.rejects(DBusConnection.connect("tcp:host=localhost,port=1"), DBusConnectError);

    const rejecting = (async () => {
      await bus.accept();
      await bus.line();
      await bus.send("REJECTED ANONYMOUS\r\n");
    })();
    await assert.rejects(
      DBusConnection.connect(bus.address),
      (e) => e instanceof DBusConnectError && /rejected EXTERNAL authentication .* offers: ANONYMOUS/.test(e.message),
    );
    await rejecting;
    bus.conn!.close();

    const silent = bus.accept();
    await assert.rejects(
      DBusConnection.connect(bus.address, { timeoutMs: 50 }),
      (e) => e instanceof DBusConnectError && /no answer to authentication within 50 ms/.test(e.message),
    );
    await silent;
  } finally {
    await bus.close();
  }
});
