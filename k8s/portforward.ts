/**
 * The one connection from tp to the traffic-manager: the API server's port-forward to the manager pod, over
 * WebSocket with subprotocol `v4.channel.k8s.io`, exposed as a Node Duplex byte stream, and as the byte transport of
 * tp's own HTTP/2 connection (`PortForwardTransport`, which skips the Duplex's stream layers).
 *
 * The channel protocol (k8s.io/apiserver wsstream, and the kubelet's portforward/websocket.go): every binary message
 * starts with a channel byte. Port i of the `ports` query has data channel 2i and error channel 2i+1; the server's
 * first message on each channel is the port as uint16 little-endian. tp forwards one port, so channel 0 carries the
 * bytes both ways and channel 1 carries, at most, the kubelet's error text. v4 has no half-close: ending the stream
 * closes the WebSocket.
 */
import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import type tls from "node:tls";
import { type V1Pod } from "@kubernetes/client-node";
import { httpError, K8sError, unreachableError } from "./errors.ts";
import { type KubeEnv, type KubeOptions, type KubeTarget, kubeTls, loadKube, where } from "./kubeconfig.ts";
import { apiCall, clients } from "./rest.ts";
import { connectWebSocket, encodeFrame, FrameDecoder, Opcode, UpgradeRefusedError } from "./websocket.ts";
import type { Connection } from "../proto/h2/connection.ts";
import { endWith, type RunnableTransport } from "../proto/h2/transport.ts";
import { errorMessage } from "../base/error_message.ts";

/** The label every traffic-manager pod carries (what `tp install` puts on the Deployment's template). */
export const MANAGER_SELECTOR = "app.kubernetes.io/name=tp-manager";
/** The manager's gRPC port when its pod names none "grpc". */
export const DEFAULT_MANAGER_PORT = 8081;
export const PORT_FORWARD_PROTOCOL = "v4.channel.k8s.io";

export interface ManagerStreamOptions extends KubeOptions {
  /** The manager's port; default the pod's container port named "grpc", else 8081. */
  port?: number | undefined;
  /** Progress lines for the user ("finding the traffic-manager in namespace tp"). */
  onProgress?: ((message: string) => void) | undefined;
  signal?: AbortSignal | undefined;
  /** WebSocket ping interval; the stream fails when nothing arrives for twice this long. 0 disables. Default 15 s. */
  keepaliveMs?: number | undefined;
  /** Bound on connecting and the WebSocket handshake. Default 15 s. */
  timeoutMs?: number | undefined;
  /** The environment and uid to resolve the kubeconfig with (tests). */
  env?: KubeEnv | undefined;
}

/** What a stream is connected to, for `tp status`. */
export interface ManagerStreamInfo {
  context: string;
  server: string;
  namespace: string;
  pod: string;
  port: number;
}

/** Picks the manager pod: the newest ready one; explains an empty or unready set. */
export function pickManagerPod(pods: V1Pod[], t: Pick<KubeTarget, "context" | "managerNamespace">): V1Pod {
  const ns = t.managerNamespace;
  const live = pods.filter((p) => !p.metadata?.deletionTimestamp);
  if (live.length === 0) {
    throw new K8sError(
      "no-manager",
      `no traffic-manager in namespace "${ns}" of context "${t.context}" (no pod labelled ${MANAGER_SELECTOR}): ` +
        `run "tp install"${ns === "tp" ? "" : ` --manager-namespace ${ns}`}, or pass --manager-namespace where it runs`,
    );
  }
  const ready = live.filter(isReady);
  if (ready.length > 0) {
    const age = (p: V1Pod) => new Date(p.metadata?.creationTimestamp ?? 0).getTime();
    return ready.sort((a, b) => age(b) - age(a))[0]!;
  }
  const p = live[0]!;
  const name = p.metadata?.name ?? "?";
  const why = [p.status?.phase ?? "Unknown"];
  for (const c of p.status?.containerStatuses ?? []) {
    const w = c.state?.waiting ?? c.state?.terminated;
    if (w?.reason) why.push(`${c.name}: ${w.reason}${w.message ? ` (${w.message})` : ""}`);
  }
  throw new K8sError(
    "manager-not-ready",
    `the traffic-manager pod "${name}" in namespace "${ns}" is not ready (${why.join("; ")}): wait for it, or see ` +
      `kubectl -n ${ns} describe pod ${name}`,
  );
}

function isReady(p: V1Pod): boolean {
  return p.status?.phase === "Running" &&
    (p.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

function grpcPort(p: V1Pod): number | undefined {
  for (const c of p.spec?.containers ?? []) {
    for (const port of c.ports ?? []) if (port.name === "grpc") return port.containerPort;
  }
  return undefined;
}

/** Finds a ready traffic-manager pod in the target's manager namespace. */
export async function findManagerPod(t: KubeTarget): Promise<V1Pod> {
  const ns = t.managerNamespace;
  const list = await apiCall(
    t,
    { verb: "list", resource: "pods", namespace: ns },
    () => clients(t).core.listNamespacedPod({ namespace: ns, labelSelector: MANAGER_SELECTOR }),
  );
  return pickManagerPod(list.items, t);
}

/**
 * Opens the one connection to the traffic-manager: resolves the kubeconfig, finds a ready manager pod, and opens
 * the API server's port-forward to it. Rejects with a K8sError that says the fix.
 */
export async function openManagerStream(opts: ManagerStreamOptions = {}): Promise<ManagerStream> {
  const progress = opts.onProgress ?? (() => {});
  const t = loadKube(opts, opts.env);
  progress(`context "${t.context}" (${t.server}): finding the traffic-manager in namespace "${t.managerNamespace}"`);
  const pod = await findManagerPod(t);
  return await openPortForward(t, pod.metadata!.name!, opts.port ?? grpcPort(pod) ?? DEFAULT_MANAGER_PORT, opts);
}

/** A factory form of `openManagerStream` for reconnects: each call finds the pod again and opens a new stream. */
export function managerStreamFactory(opts: ManagerStreamOptions = {}): () => Promise<ManagerStream> {
  return () => openManagerStream(opts);
}

/** Opens the API server's port-forward to `pod`'s `port` in the target's manager namespace. */
export async function openPortForward(
  t: KubeTarget,
  pod: string,
  port: number,
  opts: Pick<ManagerStreamOptions, "onProgress" | "signal" | "keepaliveMs" | "timeoutMs"> = {},
): Promise<ManagerStream> {
  const ns = t.managerNamespace;
  const tlsOpts = await kubeTls(t);
  const path = `${tlsOpts.basePath}/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(pod)}` +
    `/portforward?ports=${port}`;
  opts.onProgress?.(`port-forward to pod "${pod}" port ${port}`);
  let conn;
  try {
    conn = await connectWebSocket(tlsOpts, path, [PORT_FORWARD_PROTOCOL], opts);
  } catch (e) {
    if (e instanceof UpgradeRefusedError) {
      if (e.status === 404 && e.body.includes("not found")) {
        throw new K8sError(
          "no-manager",
          `the traffic-manager pod "${pod}" in namespace "${ns}" is gone: try again (tp finds the current pod)`,
          { status: 404 },
        );
      }
      throw httpError(e.status, e.body, where(t), { verb: "create", resource: "pods/portforward", namespace: ns });
    }
    throw unreachableError(e, where(t));
  }
  return new ManagerStream(conn.socket, conn.head, {
    context: t.context,
    server: t.server,
    namespace: ns,
    pod,
    port,
  }, opts.keepaliveMs ?? 15_000);
}

/** Largest payload per WebSocket frame tp sends. */
const MAX_FRAME_PAYLOAD = 256 * 1024;
const DATA_CHANNEL = new Uint8Array([0]);

/**
 * The port-forward as one duplex byte stream. Errors on it are K8sErrors of kind "port-forward": the kubelet's error
 * text (the manager refused the connection), the WebSocket closing without a close frame, or keepalives unanswered.
 */
export class ManagerStream extends Duplex {
  readonly info: ManagerStreamInfo;
  /** Frames and bytes sent and received, for `tp status`. */
  readonly counters = { framesIn: 0, framesOut: 0, bytesIn: 0, bytesOut: 0 };
  #socket: tls.TLSSocket;
  #decoder = new FrameDecoder();
  /** Port-prefix bytes still to strip per channel. */
  #prefix = [2, 2];
  #errorText = "";
  #closeSent = false;
  #closeReceived = false;
  #lastRx = Date.now();
  #keepalive: ReturnType<typeof setInterval> | undefined;

  constructor(socket: tls.TLSSocket, head: Buffer, info: ManagerStreamInfo, keepaliveMs: number) {
    super({ allowHalfOpen: false });
    this.info = info;
    this.#socket = socket;
    socket.on("data", (b: Buffer) => this.#onData(b));
    socket.on("error", (e: Error) => this.destroy(this.#fail(`the connection to the API server failed: ${e.message}`)));
    socket.on("close", () => {
      if (this.#closeReceived || this.destroyed) return;
      this.destroy(this.#fail("the API server closed the port-forward connection without a WebSocket close"));
    });
    socket.on("drain", () => {
      this.#drained?.();
      this.onSocketDrain?.();
    });
    if (keepaliveMs > 0) {
      this.#keepalive = setInterval(() => {
        if (Date.now() - this.#lastRx > 2 * keepaliveMs) {
          this.destroy(this.#fail(`the port-forward answered no keepalive for ${(2 * keepaliveMs) / 1000} s`));
        } else this.#send(Opcode.ping, new Uint8Array(0), []);
      }, keepaliveMs);
    }
    if (head.length) queueMicrotask(() => this.#onData(head));
  }

  /** The API server's address this connection goes to (tp never routes it to the cluster). */
  get remoteAddress(): string | undefined {
    return this.#socket.remoteAddress;
  }

  #fail(what: string): K8sError {
    const i = this.info;
    return new K8sError(
      "port-forward",
      `port-forward to the traffic-manager (pod "${i.pod}" port ${i.port}, namespace "${i.namespace}", context ` +
        `"${i.context}"): ${what}`,
    );
  }

  #drained: (() => void) | undefined;

  #send(opcode: number, prefix: Uint8Array, parts: readonly Uint8Array[]): boolean {
    const frame = encodeFrame(opcode, prefix, parts);
    this.counters.framesOut++;
    return this.#socket.write(frame);
  }

  #onData(b: Buffer): void {
    this.#lastRx = Date.now();
    let frames;
    try {
      frames = this.#decoder.push(b);
    } catch (e) {
      this.destroy(this.#fail(`bad WebSocket data: ${errorMessage(e)}`));
      return;
    }
    for (const f of frames) {
      this.counters.framesIn++;
      if (f.opcode === Opcode.binary) this.#onMessage(f.payload);
      else if (f.opcode === Opcode.ping) this.#send(Opcode.pong, new Uint8Array(0), [f.payload]);
      else if (f.opcode === Opcode.close) {
        this.#closeReceived = true;
        if (!this.#closeSent) {
          this.#closeSent = true;
          this.#send(Opcode.close, new Uint8Array(0), [f.payload.subarray(0, 2)]);
        }
        this.#socket.end();
        this.push(null);
      }
      if (this.destroyed) return;
    }
  }

  /**
   * When set, payload from the manager goes here instead of through the Duplex's readable side (see
   * `PortForwardTransport`): one layer of node streams fewer per chunk. The HTTP/2 connection on top bounds what
   * the manager may send with its windows, so nothing piles up.
   */
  onPayload: ((data: Uint8Array) => void) | undefined;
  /** Called when the TLS socket took what was written (with `onPayload`'s direct path). */
  onSocketDrain: (() => void) | undefined;

  /** Bytes written and not yet taken by the TLS socket. */
  get socketBuffered(): number {
    return this.#socket.writableLength;
  }

  /** Sends bytes on the data channel without the Duplex's writable side (the direct path). */
  sendData(bytes: Uint8Array): void {
    if (this.destroyed || this.#closeSent) return;
    this.counters.bytesOut += bytes.length;
    for (let off = 0; off < bytes.length; off += MAX_FRAME_PAYLOAD) {
      this.#send(Opcode.binary, DATA_CHANNEL, [bytes.subarray(off, Math.min(bytes.length, off + MAX_FRAME_PAYLOAD))]);
    }
  }

  #onMessage(m: Buffer): void {
    const ch = m[0];
    if (ch === undefined || ch > 1) return; // one port: other channels do not exist
    let data = m.subarray(1);
    const strip = Math.min(this.#prefix[ch]!, data.length);
    this.#prefix[ch]! -= strip;
    data = data.subarray(strip);
    if (data.length === 0) return;
    if (ch === 1) {
      this.#errorText += data.toString("utf8");
      this.destroy(this.#fail(`the kubelet says: ${this.#errorText.trim()}`));
      return;
    }
    this.counters.bytesIn += data.length;
    if (this.onPayload) this.onPayload(data);
    else if (!this.push(data)) this.#socket.pause();
  }

  override _read(): void {
    this.#socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.#writeParts([chunk], cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (e?: Error | null) => void): void {
    this.#writeParts(chunks.map((c) => c.chunk), cb);
  }

  #writeParts(parts: Buffer[], cb: (e?: Error | null) => void): void {
    let ok = true;
    let batch: Buffer[] = [];
    let size = 0;
    const flush = () => {
      if (batch.length) ok = this.#send(Opcode.binary, DATA_CHANNEL, batch) && ok;
      batch = [];
      size = 0;
    };
    for (let p of parts) {
      this.counters.bytesOut += p.length;
      while (p.length > 0) {
        const take = Math.min(p.length, MAX_FRAME_PAYLOAD - size);
        batch.push(p.subarray(0, take));
        size += take;
        p = p.subarray(take);
        if (size >= MAX_FRAME_PAYLOAD) flush();
      }
    }
    flush();
    if (ok) cb();
    else {
      this.#drained = () => {
        this.#drained = undefined;
        cb();
      };
    }
  }

  override _final(cb: (e?: Error | null) => void): void {
    if (!this.#closeSent) {
      this.#closeSent = true;
      this.#send(Opcode.close, new Uint8Array(0), [new Uint8Array([0x03, 0xe8])]); // 1000: normal closure
    }
    cb();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    clearInterval(this.#keepalive);
    this.#keepalive = undefined;
    const d = this.#drained;
    this.#drained = undefined;
    d?.();
    this.#socket.destroy();
    cb(err);
  }
}

/**
 * The port-forward as the byte transport of tp's HTTP/2 connection, straight onto the WebSocket: bytes to send
 * become data-channel frames, and the manager's bytes go to the connection as they are unframed, with no node
 * stream in between (scripts/bench_portforward measures what that saves).
 */
export class PortForwardTransport implements RunnableTransport {
  constructor(readonly stream: ManagerStream) {}

  get buffered(): number {
    return this.stream.socketBuffered;
  }

  write(bytes: Uint8Array): void {
    this.stream.sendData(bytes);
  }

  close(): void {
    if (!this.stream.destroyed) this.stream.end();
  }

  run(h2: Connection): void {
    this.stream.onPayload = (d) => h2.receive(d);
    this.stream.onSocketDrain = () => h2.transportDrained();
    endWith(h2, this.stream, "the port-forward closed");
  }
}
