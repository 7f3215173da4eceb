/**
 * pods/portforward on the API server double: the upgrade request checked as kube-apiserver and the kubelet check it
 * (authenticated, RBAC's create on pods/portforward, the pod there and Running, its ports), then served over WebSocket
 * (subprotocol v4.channel.k8s.io, framed by the `ws` package so tp's client meets an independent implementation: data
 * channel 2i and error channel 2i+1 per port) or over SPDY (k8s_apiserver_spdy.ts). It gets only what it needs of the
 * double: the pod lookup, RBAC, where a forwarded port connects, and a way to record each answer; it keeps the
 * counts tests read and cuts every connection on demand.
 */
import { Buffer } from "node:buffer";
import net from "node:net";
import type tls from "node:tls";
import { type WebSocket, WebSocketServer } from "ws";
import { type Identity, jsonResponse } from "./k8s_apiserver_http.ts";
import { type Access, type Obj, RESOURCES } from "./k8s_apiserver_objects.ts";
import { serveSpdyPortForward, type SpdyConnection } from "./k8s_apiserver_spdy.ts";
import { forbidden, status } from "./k8s_apiserver_status.ts";

const V4 = "v4.channel.k8s.io";

export interface PortForwardDeps {
  /** The pod the path names, as the store holds it. */
  pod(namespace: string, name: string): Obj | undefined;
  authorize(a: Access): boolean;
  /** Where a port-forward to (namespace, pod, port) connects; undefined: the pod's podIP and that port. */
  target: ((namespace: string, pod: string, port: number) => { host: string; port: number }) | undefined;
}

/** An upgrade request, as read off the socket. */
export interface UpgradeRequest {
  method: string;
  target: string;
  headers: Record<string, string>;
  /** Bytes read past the request's head. */
  head: Buffer;
  /** Who sent it; undefined: nobody the double knows (401). */
  who: Identity | undefined;
  /** Records the answer's status, for the double's request log. */
  record(status: number): void;
}

export class PortForwards {
  /** WebSocket port-forward connections accepted. */
  webSocketUpgrades = 0;
  /** kubectl's SPDY port-forward connections accepted. */
  spdyUpgrades = 0;
  /** Port-forward TCP connections made to targets. */
  dials = 0;

  #deps: PortForwardDeps;
  #wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    handleProtocols: (protocols: Set<string>) => protocols.has(V4) ? V4 : false,
  });
  #spdyConns = new Set<SpdyConnection>();

  constructor(deps: PortForwardDeps) {
    this.#deps = deps;
  }

  /** Answers a WebSocket or SPDY upgrade on `socket`: a failure's Status, or the port-forward. */
  upgrade(socket: tls.TLSSocket, r: UpgradeRequest): void {
    const { headers, who } = r;
    const url = new URL(r.target, "https://double");
    const fail = (code: number, value: unknown) => {
      r.record(code);
      socket.end(jsonResponse(code, value, "Connection: close"));
    };
    if (!who) return fail(401, status(401, "Unauthorized", "Unauthorized"));
    const m = url.pathname.match(/^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/portforward$/);
    if (!m) return fail(404, status(404, "NotFound", "the server could not find the requested resource"));
    const [, namespace, name] = m as unknown as [string, string, string];
    const access: Access = { ...who, verb: "create", resource: "pods/portforward", group: "", namespace, name };
    if (!this.#deps.authorize(access)) {
      return fail(403, forbidden(access, RESOURCES.find((r) => r.plural === "pods")!));
    }
    const pod = this.#deps.pod(namespace, name);
    if (!pod) return fail(404, status(404, "NotFound", `pods "${name}" not found`, { name, kind: "pods" }));
    const phase = (pod.status as { phase?: string })?.phase;
    if (phase !== "Running") {
      return fail(400, status(400, "BadRequest", `pod ${name} does not have a host assigned`)); // what kubelet-less pods get
    }
    const ports = url.searchParams.getAll("ports").flatMap((p) => p.split(",")).map(Number);
    // The channel protocol names its ports in the query; SPDY names them in each stream's headers.
    const offered = (headers["sec-websocket-protocol"] ?? "").split(",").map((p) => p.trim());
    const channels = (headers["upgrade"] ?? "").toLowerCase() === "websocket" && offered.includes(V4);
    if (channels && (ports.length === 0 || ports.some((p) => !(p > 0 && p < 65536)))) {
      return fail(400, status(400, "BadRequest", 'query parameter "port" is required'));
    }
    const podIP = (pod.status as { podIP?: string }).podIP ?? "127.0.0.1";
    const dial = (port: number) => {
      const to = this.#deps.target?.(namespace, name, port) ?? { host: podIP, port };
      this.dials++;
      return net.connect({ host: to.host, port: to.port });
    };
    if ((headers["upgrade"] ?? "").toLowerCase() === "spdy/3.1") {
      const versions = (headers["x-stream-protocol-version"] ?? "").split(",").map((v) => v.trim());
      if (!versions.includes("portforward.k8s.io")) {
        return fail(400, status(400, "BadRequest", "unable to upgrade: no common stream protocol"));
      }
      r.record(101);
      this.spdyUpgrades++;
      socket.write(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n" +
          "X-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n",
      );
      if (r.head.length) socket.unshift(r.head);
      const conn = serveSpdyPortForward(socket, name, dial);
      this.#spdyConns.add(conn);
      socket.on("close", () => this.#spdyConns.delete(conn));
      return;
    }
    const req = { method: r.method, url: r.target, headers };
    this.#wss.handleUpgrade(req as never, socket as never, r.head, (ws: WebSocket) => {
      r.record(101);
      this.webSocketUpgrades++;
      forwardChannels(ws, namespace, name, ports, dial);
    });
  }

  /** Cuts every port-forward connection at once, as an API server that restarts does; returns how many. */
  drop(): number {
    const n = this.#wss.clients.size + this.#spdyConns.size;
    this.close();
    return n;
  }

  /** Open port-forward WebSockets. */
  get openWebSockets(): number {
    return this.#wss.clients.size;
  }

  close(): void {
    for (const ws of this.#wss.clients) ws.terminate();
    for (const c of this.#spdyConns) c.destroyStreams();
  }
}

/** The channel protocol on `ws`: port i's bytes (to and from `dial(port)`) on data channel 2i, its error on 2i+1. */
function forwardChannels(
  ws: WebSocket,
  namespace: string,
  pod: string,
  ports: number[],
  dial: (port: number) => net.Socket,
): void {
  const conns: (net.Socket | undefined)[] = [];
  const portBytes = (p: number) => [p & 0xff, p >> 8];
  ports.forEach((port, i) => {
    ws.send(Buffer.from([2 * i, ...portBytes(port)]));
    ws.send(Buffer.from([2 * i + 1, ...portBytes(port)]));
    const c = dial(port);
    c.setNoDelay(true);
    conns[i] = c;
    c.on("data", (d: Buffer) => {
      ws.send(Buffer.concat([Buffer.from([2 * i]), d]));
      if (ws.bufferedAmount > 1 << 20) {
        c.pause();
        const resume = () => ws.bufferedAmount > 1 << 18 ? setTimeout(resume, 2) : c.resume();
        setTimeout(resume, 2);
      }
    });
    c.on("error", (e: Error) => {
      // The kubelet's words (pkg/kubelet/cri/streaming/portforward/websocket.go).
      const msg = `an error occurred forwarding ${port} -> ${port}: error forwarding port ${port} to pod ${pod}, ` +
        `uid : failed to connect to localhost:${port} inside namespace "${namespace}": ${e.message}`;
      if (ws.readyState === ws.OPEN) ws.send(Buffer.concat([Buffer.from([2 * i + 1]), Buffer.from(msg)]));
      ws.close(1000);
    });
    c.on("end", () => ws.close(1000));
  });
  ws.on("message", (data: Buffer) => {
    const ch = data[0];
    if (ch === undefined || ch % 2 !== 0) return; // error channels carry nothing from the client
    const c = conns[ch / 2];
    if (c && !c.write(data.subarray(1)) && !ws.isPaused) {
      ws.pause();
      c.once("drain", () => ws.resume());
    }
  });
  ws.on("close", () => conns.forEach((c) => c?.destroy()));
  ws.on("error", () => conns.forEach((c) => c?.destroy()));
}
