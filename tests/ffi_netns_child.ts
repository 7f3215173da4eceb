/**
 * The process that runs ffi/ code inside a test's network namespace (`ip netns exec NS deno run ...`), since a Deno
 * program cannot move its own threads into another namespace. It answers one JSON request per stdin line with one
 * JSON line on stdout: `{"ok": result}` or `{"error": {name, message, code}}`. The parent (tests/ffi_netns.ts)
 * drives it; iproute2 in the parent is the independent observer.
 */
import dgram from "node:dgram";
import net from "node:net";
import { createTun, type LinuxTun, type LinuxTunOptions } from "../ffi/tun_linux.ts";
import { Netlink } from "../ffi/netlink.ts";

type Request = { op: string; [key: string]: unknown };

const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s: string): Uint8Array => Uint8Array.from(s.match(/../g) ?? [], (x) => parseInt(x, 16));

class Child {
  tun: LinuxTun | undefined;
  sockets = new Map<number, dgram.Socket>();
  received = new Map<number, { data: string; from: string; port: number }[]>();
  pendingRead: Promise<Uint8Array[]> | undefined;
  netlink: Netlink | undefined;

  get device(): LinuxTun {
    if (this.tun === undefined) throw new Error("no TUN device: send createTun first");
    return this.tun;
  }

  async handle(req: Request): Promise<unknown> {
    switch (req.op) {
      case "pid":
        return Deno.pid;
      case "createTun": {
        this.tun = createTun((req.options ?? {}) as LinuxTunOptions);
        return { name: this.tun.name, mtu: this.tun.mtu, batchSize: this.tun.batchSize, fd: this.tun.fd };
      }
      case "read": {
        // Reads until `count` packets arrived or `timeoutMs` passed; returns them as hex.
        const count = Number(req.count ?? 1), deadline = Date.now() + Number(req.timeoutMs ?? 2000);
        const got: string[] = [];
        while (got.length < count && Date.now() < deadline) {
          this.pendingRead ??= this.device.read();
          let timer: ReturnType<typeof setTimeout> | undefined;
          const timeout = new Promise<"timeout">((r) => {
            timer = setTimeout(() => r("timeout"), Math.max(1, deadline - Date.now()));
          });
          const batch = await Promise.race([this.pendingRead, timeout]);
          clearTimeout(timer);
          if (batch === "timeout") break;
          this.pendingRead = undefined;
          if (batch.length === 0) break;
          for (const p of batch) got.push(hex(p));
        }
        return got;
      }
      case "nl": {
        // Calls one Netlink method: {"op": "nl", "method": "addRoute", "args": [{...}]}.
        this.netlink ??= Netlink.open();
        const method = String(req.method) as keyof Netlink;
        const fn = this.netlink[method] as unknown;
        if (typeof fn !== "function") throw new TypeError(`Netlink has no method "${String(method)}"`);
        return fn.apply(this.netlink, (req.args ?? []) as unknown[]);
      }
      case "tcpThroughReflector": {
        // Sends `bytes` bytes over TCP from a client to 198.18.1.1:port; the device reads every packet, swaps the
        // IPv4 addresses (the checksum stays valid) and writes it back, so the listener on 198.18.0.1 receives it.
        const tun = this.device, port = Number(req.port), total = Number(req.bytes);
        let stop = false, largest = 0, reads = 0;
        const reflector = (async () => {
          for (let i = 0; i < 10_000_000 && !stop; i++) {
            const batch = await tun.read();
            if (batch.length === 0 || stop) return;
            for (const p of batch) {
              largest = Math.max(largest, p.length);
              const src = p.slice(12, 16);
              p.copyWithin(12, 16, 20);
              p.set(src, 16);
            }
            reads += batch.length;
            tun.write(batch.filter((p) => p[0]! >> 4 === 4));
          }
        })();
        const pattern = (i: number) => (i * 7 + (i >> 8)) & 0xff;
        let received = 0, corrupt = 0;
        const server = net.createServer((sock) => {
          sock.on("data", (chunk: Uint8Array) => {
            for (let j = 0; j < chunk.length; j++) if (chunk[j] !== pattern(received + j)) corrupt++;
            received += chunk.length;
          });
        });
        await new Promise<void>((r) => server.listen(port, "198.18.0.1", r));
        try {
          const data = Uint8Array.from({ length: total }, (_, i) => pattern(i));
          await new Promise<void>((resolve, reject) => {
            const c = net.connect(port, "198.18.1.1", () => c.end(data));
            c.on("error", reject);
            c.on("close", () => resolve());
          });
          for (let i = 0; i < 500 && received < total; i++) await new Promise((r) => setTimeout(r, 10));
        } finally {
          stop = true;
          server.close();
        }
        // Wake the reflector's pending read with one last packet of its own making: closing is left to the test.
        await this.handle({ op: "udpSend", address: "198.18.1.9", port: 9, payloads: ["00"] });
        await reflector;
        return { received, corrupt, largest, reads, stats: tun.stats };
      }
      case "write":
        return this.device.write((req.packets as string[]).map(unhex));
      case "stats":
        return this.device.stats;
      case "close": {
        this.device.close();
        // A read pending across close() must resolve to [] (the device contract).
        const last = this.pendingRead ? await this.pendingRead : [];
        this.pendingRead = undefined;
        return { pendingReadResult: last.length };
      }
      case "udpBind": {
        const family = String(req.address).includes(":") ? "udp6" : "udp4";
        const sock = dgram.createSocket(family);
        const port = Number(req.port);
        this.received.set(port, []);
        sock.on("message", (msg, rinfo) => {
          this.received.get(port)?.push({ data: hex(msg), from: rinfo.address, port: rinfo.port });
        });
        await new Promise<void>((resolve, reject) => {
          sock.once("error", reject);
          sock.bind(port, String(req.address), () => resolve());
        });
        this.sockets.set(port, sock);
        return port;
      }
      case "udpReceived": {
        const port = Number(req.port), deadline = Date.now() + Number(req.timeoutMs ?? 2000);
        for (let i = 0; i < 1000 && (this.received.get(port)?.length ?? 0) < Number(req.count ?? 1); i++) {
          if (Date.now() > deadline) break;
          await new Promise((r) => setTimeout(r, 5));
        }
        return this.received.get(port) ?? [];
      }
      case "udpSend": {
        const to = String(req.address);
        const sock = dgram.createSocket(to.includes(":") ? "udp6" : "udp4");
        try {
          const msgs = (req.payloads as string[]).map(unhex);
          for (const m of msgs) {
            await new Promise<void>((resolve, reject) => {
              sock.send(m, Number(req.port), to, (err) => (err ? reject(err) : resolve()));
            });
          }
          return msgs.length;
        } finally {
          sock.close();
        }
      }
      case "exit":
        for (const s of this.sockets.values()) s.close();
        this.tun?.close();
        this.netlink?.close();
        return "bye";
      default:
        throw new TypeError(`unknown op "${req.op}"`);
    }
  }
}

async function main(): Promise<void> {
  const child = new Child();
  const encoder = new TextEncoder();
  const out = (v: unknown) => Deno.stdout.writeSync(encoder.encode(JSON.stringify(v) + "\n"));
  let buffered = "";
  const decoder = new TextDecoder();
  for await (const chunk of Deno.stdin.readable) {
    buffered += decoder.decode(chunk, { stream: true });
    for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      const req = JSON.parse(line) as Request;
      try {
        out({ ok: (await child.handle(req)) ?? null });
      } catch (e) {
        const err = e as Error & { code?: string };
        out({ error: { name: err.name, message: err.message, code: err.code ?? null } });
      }
      if (req.op === "exit") return;
    }
  }
}

if (import.meta.main) {
  // Requests can also come as arguments (one JSON request each) for one-shot runs, e.g. under setpriv.
  if (Deno.args.length > 0) {
    const child = new Child();
    for (const arg of Deno.args) {
      try {
        console.log(JSON.stringify({ ok: (await child.handle(JSON.parse(arg) as Request)) ?? null }));
      } catch (e) {
        const err = e as Error & { code?: string };
        console.log(JSON.stringify({ error: { name: err.name, message: err.message, code: err.code ?? null } }));
      }
    }
    await child.handle({ op: "exit" });
  } else {
    await main();
  }
}
