/**
 * A TEST DOUBLE of the Kubernetes API server: no real API server can run on this network, so tests run tp (and
 * kubectl, to check the double) against this one. It serves HTTPS/1.1 on loopback (or any address) with a CA the test
 * makes, and speaks just what tp and the kubectl checks use:
 *
 * - auth: bearer tokens and client certificates signed by the test CA; anything else gets the real 401 Status;
 * - RBAC: a predicate over (user, verb, resource, namespace); a denial gets the real 403 Status message;
 * - discovery: /version, /api, /api/v1, /apis, /apis/{group}/{version} (legacy, unaggregated);
 * - CRUD: get, list (with labelSelector equality), watch (chunked JSON events), create, delete, update (PUT) and
 *   patch for namespaces, nodes, pods, services, secrets, service accounts, deployments, statefulsets, replicasets,
 *   cluster roles and bindings, roles and role bindings;
 * - PATCH as JSON patch (`application/json-patch+json`, RFC 6902, what tp sends; a failed `test` is the real 422) and
 *   JSON merge patch (`application/merge-patch+json`, RFC 7386, `kubectl patch --type merge`); strategic merge patch
 *   (kubectl's default for built-in types) gets the real 415, as for a custom resource. PUT and a patch that sets
 *   metadata.resourceVersion are refused with the real 409 when it is stale. A change bumps resourceVersion, and
 *   metadata.generation (apps kinds) when the spec changed; a change that changes nothing bumps nothing. Server-set
 *   fields (uid, creationTimestamp, status, a Service's clusterIP) survive updates; a Secret's stringData is folded
 *   into data; a Service port's targetPort defaults to its port and protocol to TCP;
 * - a Deployment whose pod template changes gets its pod replaced (new name, the new template), when
 *   `runDeployments` is on; with a kubelet attached (`attachKubelet`, tests/k8s_kubelet_double.ts) its pods start
 *   Pending, without an IP, and the kubelet is told of every pod event, runs the pod and reports its status;
 * - services create allocates a clusterIP in its service CIDRs and answers an out-of-range clusterIP with the real
 *   422 Invalid message, which names the valid range;
 * - a created Deployment gets one ready pod (its template's labels, a podIP) when `runDeployments` is on;
 * - pods/portforward over WebSocket with subprotocol `v4.channel.k8s.io` (the `ws` package does the WebSocket
 *   framing, so tp's own client is checked against an independent implementation): for each port, data channel
 *   2i and error channel 2i+1, each opened by a frame holding the port (uint16 little-endian), bytes relayed to a TCP
 *   address the test chooses, dial errors written on the error channel in the kubelet's words;
 * - pods/portforward for kubectl: SPDY/3.1 (spdy-transport) after an `Upgrade: SPDY/3.1`; kubectl opens an error
 *   stream and a data stream per connection, with headers streamType, port and requestID. kubectl >= 1.31 first
 *   tries SPDY tunneled in a WebSocket (subprotocol `SPDY/3.1+portforward.k8s.io`); `ws` refuses that subprotocol
 *   token with 400, and kubectl falls back to the SPDY upgrade by itself, so no KUBECTL_* switch is needed.
 *
 * Not served: protobuf request bodies (kubectl's typed commands such as `kubectl create secret generic` send them;
 * pipe their `--dry-run=client -o json` to `kubectl create -f -`), strategic merge and apply patches, field
 * selectors, aggregated discovery, OpenAPI.
 */
import { Buffer } from "node:buffer";
import { X509Certificate } from "node:crypto";
import net from "node:net";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { type WebSocket, WebSocketServer } from "ws";
import spdy from "spdy-transport";
import type { TestPki } from "./k8s_certs.ts";
import { applyJsonPatch, jsonEqual, JsonPatchError, type JsonPatchOp } from "../k8s/json_patch.ts";

const V4 = "v4.channel.k8s.io";

// spdy-transport insists on HTTP's ":method" and ":path" in every SYN_STREAM; Kubernetes' SPDY client (moby
// spdystream) sends only streamType, port and requestID. Give those streams placeholders, in this double only.
{
  const parser = (spdy as unknown as { protocol: { spdy: { parser: { create(o: unknown): unknown } } } }).protocol.spdy
    .parser;
  const create = parser.create;
  parser.create = (o: unknown) => {
    const p = create(o) as { parseKVs(buf: unknown, cb: (e: unknown, h?: Record<string, string>) => void): void };
    const parseKVs = p.parseKVs;
    p.parseKVs = function (buf, cb) {
      parseKVs.call(this, buf, (e, h) => {
        if (!e && h && h[":method"] === undefined && h["streamtype"] !== undefined) {
          h[":method"] = "POST";
          h[":path"] = "/";
        }
        cb(e, h);
      });
    };
    return p;
  };
}

/** The part of spdy-transport's stream tp's double uses (the package has no types). */
type SpdyStream = Duplex & { headers: Record<string, string>; respond(status: number, headers: object): void };

type Obj = Record<string, unknown> & { metadata: Record<string, unknown> };

interface ResourceDef {
  group: string; // "" for core
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
  shortNames?: string[];
  singular: string;
}

const RESOURCES: ResourceDef[] = [
  { group: "", version: "v1", plural: "namespaces", kind: "Namespace", namespaced: false, shortNames: ["ns"] },
  { group: "", version: "v1", plural: "nodes", kind: "Node", namespaced: false, shortNames: ["no"] },
  { group: "", version: "v1", plural: "pods", kind: "Pod", namespaced: true, shortNames: ["po"] },
  { group: "", version: "v1", plural: "services", kind: "Service", namespaced: true, shortNames: ["svc"] },
  { group: "", version: "v1", plural: "serviceaccounts", kind: "ServiceAccount", namespaced: true, shortNames: ["sa"] },
  { group: "", version: "v1", plural: "secrets", kind: "Secret", namespaced: true },
  { group: "apps", version: "v1", plural: "deployments", kind: "Deployment", namespaced: true, shortNames: ["deploy"] },
  { group: "apps", version: "v1", plural: "statefulsets", kind: "StatefulSet", namespaced: true, shortNames: ["sts"] },
  { group: "apps", version: "v1", plural: "replicasets", kind: "ReplicaSet", namespaced: true, shortNames: ["rs"] },
  { group: "rbac.authorization.k8s.io", version: "v1", plural: "clusterroles", kind: "ClusterRole", namespaced: false },
  {
    group: "rbac.authorization.k8s.io",
    version: "v1",
    plural: "clusterrolebindings",
    kind: "ClusterRoleBinding",
    namespaced: false,
  },
  { group: "rbac.authorization.k8s.io", version: "v1", plural: "roles", kind: "Role", namespaced: true },
  { group: "rbac.authorization.k8s.io", version: "v1", plural: "rolebindings", kind: "RoleBinding", namespaced: true },
].map((r) => ({ ...r, singular: r.kind.toLowerCase() }));

/** One API request in RBAC's words. `resource` includes a subresource ("pods/portforward"). */
export interface Access {
  user: string;
  groups: string[];
  verb: string;
  resource: string;
  group: string;
  namespace: string | undefined;
  name: string | undefined;
}

export interface ApiServerDoubleOptions {
  pki: TestPki;
  host?: string;
  port?: number;
  /** Bearer token -> user name. */
  tokens?: Record<string, string>;
  /** RBAC: true allows. Default: everything for every authenticated user. */
  authorize?: (a: Access) => boolean;
  /** Default ["10.96.0.0/12"]: where services' clusterIPs come from. */
  serviceCidrs?: string[];
  /** Where a port-forward to (namespace, pod, port) connects; default the pod's podIP and that port. */
  portForwardTarget?: (namespace: string, pod: string, port: number) => { host: string; port: number };
  /** Give every created Deployment one ready pod. Default true. */
  runDeployments?: boolean;
  gitVersion?: string;
}

/** What the double tells a kubelet: every pod added, changed or deleted (a kubelet's watch, in-process). */
export interface PodRunner {
  podEvent(type: "ADDED" | "MODIFIED" | "DELETED", pod: Obj): void;
}

interface Watcher {
  def: ResourceDef;
  namespace: string | undefined;
  selector: [string, string][];
  send(type: string, obj: Obj): void;
}

/** Every request the double answered, for tests that count them. */
export interface DoubleRequest {
  method: string;
  path: string;
  user: string;
  status: number;
  /** The request body's Content-Type, for requests with a body. */
  contentType?: string;
}

export class ApiServerDouble {
  readonly url: string;
  readonly requests: DoubleRequest[] = [];
  /** WebSocket port-forward connections accepted. */
  webSocketUpgrades = 0;
  /** kubectl's SPDY port-forward connections accepted. */
  spdyUpgrades = 0;
  /** Port-forward TCP connections made to targets. */
  portForwardDials = 0;
  /** Objects created through the API (not those the test seeded or the double made), in order. */
  readonly created: Obj[] = [];

  #server: tls.Server;
  #sockets = new Set<net.Socket>();
  #store = new Map<string, Obj>(); // key: plural/namespace/name
  #watchers = new Set<Watcher>();
  #spdyConns = new Set<{ destroyStreams(): void; end(): void }>();
  #rv = 1;
  #wss: WebSocketServer;
  #ca: X509Certificate;
  #opts: ApiServerDoubleOptions;
  #serviceCidrs: string[];
  #ipNext = 10;
  #kubelet: PodRunner | undefined;

  private constructor(server: tls.Server, url: string, opts: ApiServerDoubleOptions) {
    this.#server = server;
    this.url = url;
    this.#opts = opts;
    this.#ca = new X509Certificate(opts.pki.caCert);
    this.#serviceCidrs = opts.serviceCidrs ?? ["10.96.0.0/12"];
    this.#wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      handleProtocols: (protocols: Set<string>) => protocols.has(V4) ? V4 : false,
    });
  }

  static start(opts: ApiServerDoubleOptions): Promise<ApiServerDouble> {
    const server = tls.createServer({
      key: opts.pki.serverKey,
      cert: opts.pki.serverCert,
      ca: opts.pki.caCert,
      requestCert: true,
      rejectUnauthorized: false,
      ALPNProtocols: ["http/1.1"],
    });
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => {
        const a = server.address() as net.AddressInfo;
        const host = a.address.includes(":") ? `[${a.address}]` : a.address;
        const d = new ApiServerDouble(server, `https://${host}:${a.port}`, opts);
        server.on("secureConnection", (s) => d.#accept(s));
        resolve(d);
      });
    });
  }

  /** A kubeconfig (YAML) for this double: a token user, a client-certificate user, or an exec plugin user. */
  kubeconfig(
    o: {
      context?: string;
      namespace?: string;
      token?: string;
      clientCert?: { certFile: string; keyFile: string };
      exec?: { command: string; args: string[] };
      caFile?: boolean;
      insecure?: boolean;
    } = {},
  ): string {
    const context = o.context ?? "lab";
    const cluster = o.insecure
      ? { server: this.url, "insecure-skip-tls-verify": true }
      : o.caFile
      ? { server: this.url, "certificate-authority": this.#opts.pki.caFile }
      : { server: this.url, "certificate-authority-data": btoa(this.#opts.pki.caCert) };
    const user = o.clientCert
      ? { "client-certificate": o.clientCert.certFile, "client-key": o.clientCert.keyFile }
      : o.exec
      ? {
        exec: {
          apiVersion: "client.authentication.k8s.io/v1",
          command: o.exec.command,
          args: o.exec.args,
          interactiveMode: "Never",
        },
      }
      : { token: o.token ?? "" };
    return JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "double", cluster }],
      users: [{ name: "tester", user }],
      contexts: [{
        name: context,
        context: { cluster: "double", user: "tester", ...(o.namespace ? { namespace: o.namespace } : {}) },
      }],
      "current-context": context,
    });
  }

  /** Runs pods through a kubelet double from now on: Deployments' new pods start Pending and it reports them. */
  attachKubelet(k: PodRunner | undefined): void {
    this.#kubelet = k;
  }

  // ---- the store -------------------------------------------------------------------------------------------------

  /** Seeds an object (no auth, not counted in `created`). */
  put(obj: Obj): Obj {
    const def = defOf(obj);
    const md = obj.metadata;
    md.uid ??= crypto.randomUUID();
    md.creationTimestamp ??= new Date().toISOString();
    md.resourceVersion = String(++this.#rv);
    const key = this.#key(def, md.namespace as string | undefined, md.name as string);
    const type = this.#store.has(key) ? "MODIFIED" : "ADDED";
    this.#store.set(key, obj);
    this.#notify(def, type, obj);
    return obj;
  }

  get(plural: string, namespace: string | undefined, name: string): Obj | undefined {
    return this.#store.get(`${plural}/${namespace ?? ""}/${name}`);
  }

  remove(plural: string, namespace: string | undefined, name: string): boolean {
    const def = RESOURCES.find((r) => r.plural === plural)!;
    const key = this.#key(def, namespace, name);
    const obj = this.#store.get(key);
    if (!obj) return false;
    this.#store.delete(key);
    obj.metadata.resourceVersion = String(++this.#rv);
    this.#notify(def, "DELETED", obj);
    if (plural === "namespaces") {
      for (const [k, o] of [...this.#store]) {
        if (o.metadata.namespace === name) {
          this.#store.delete(k);
          this.#notify(defOf(o), "DELETED", o);
        }
      }
    }
    return true;
  }

  list(plural: string, namespace?: string): Obj[] {
    return [...this.#store.entries()].filter(([k]) =>
      k.startsWith(`${plural}/`) && (namespace === undefined || k.startsWith(`${plural}/${namespace}/`))
    ).map(([, o]) => o);
  }

  /** A pod as a kubelet would report it: Running and Ready unless told otherwise. */
  addPod(
    namespace: string,
    name: string,
    o: {
      labels?: Record<string, string>;
      /** null: none yet (a Pending pod). Default 127.0.0.1. */
      podIP?: string | null;
      ready?: boolean;
      phase?: string;
      ports?: number[];
      containers?: unknown[];
      ownerReferences?: unknown[];
    } = {},
  ): Obj {
    const ready = o.ready ?? true;
    const ip = o.podIP === null ? {} : { podIP: o.podIP ?? "127.0.0.1", podIPs: [{ ip: o.podIP ?? "127.0.0.1" }] };
    return this.put({
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name,
        namespace,
        labels: o.labels ?? {},
        ...(o.ownerReferences ? { ownerReferences: o.ownerReferences } : {}),
      },
      spec: {
        containers: o.containers ??
          [{ name: "main", image: "x", ports: (o.ports ?? []).map((p) => ({ containerPort: p })) }],
        nodeName: "node-1",
      },
      status: {
        phase: o.phase ?? "Running",
        ...ip,
        conditions: [{ type: "Ready", status: ready ? "True" : "False" }],
        containerStatuses: [{
          name: "main",
          ready,
          restartCount: 0,
          state: ready ? { running: {} } : { waiting: { reason: "ContainerCreating" } },
        }],
      },
    });
  }

  addNode(name: string, podCIDRs: string[] = []): Obj {
    return this.put({
      apiVersion: "v1",
      kind: "Node",
      metadata: { name },
      spec: podCIDRs.length ? { podCIDR: podCIDRs[0], podCIDRs } : {},
      status: { conditions: [{ type: "Ready", status: "True" }] },
    });
  }

  #key(def: ResourceDef, namespace: string | undefined, name: string): string {
    return `${def.plural}/${def.namespaced ? namespace ?? "" : ""}/${name}`;
  }

  #notify(def: ResourceDef, type: string, obj: Obj): void {
    if (def.plural === "pods") this.#kubelet?.podEvent(type as "ADDED" | "MODIFIED" | "DELETED", obj);
    for (const w of this.#watchers) {
      if (w.def !== def) continue;
      if (w.namespace !== undefined && obj.metadata.namespace !== w.namespace) continue;
      if (!matches(obj, w.selector)) continue;
      w.send(type, obj);
    }
  }

  // ---- HTTP/1.1 ----------------------------------------------------------------------------------------------------

  #accept(socket: tls.TLSSocket): void {
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
    socket.on("error", () => {});
    let identity: { user: string; groups: string[] } | undefined;
    try {
      const peer = socket.getPeerCertificate(true) as { raw?: Buffer };
      if (peer?.raw) {
        const cert = new X509Certificate(peer.raw);
        if (cert.checkIssued(this.#ca) && cert.verify(this.#ca.publicKey)) {
          const subject = cert.subject.split("\n");
          identity = {
            user: subject.find((l) => l.startsWith("CN="))?.slice(3) ?? "",
            groups: subject.filter((l) => l.startsWith("O=")).map((l) => l.slice(2)),
          };
        }
      }
    } catch { /* no client certificate */ }
    let buf = Buffer.alloc(0);
    let busy = false;
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      pump();
    };
    const pump = () => {
      while (!busy) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buf.subarray(0, end).toString("latin1").split("\r\n");
        const [method = "", target = ""] = (head[0] ?? "").split(" ");
        const headers: Record<string, string> = {};
        for (const line of head.slice(1)) {
          const i = line.indexOf(":");
          if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
        }
        const len = Number(headers["content-length"] ?? 0);
        if (buf.length < end + 4 + len) return;
        const body = buf.subarray(end + 4, end + 4 + len).toString("utf8");
        buf = buf.subarray(end + 4 + len);
        const upgrade = (headers["upgrade"] ?? "").toLowerCase();
        if (upgrade === "websocket" || upgrade === "spdy/3.1") {
          socket.off("data", onData);
          this.#upgrade(socket, method, target, headers, buf, identity);
          return;
        }
        busy = true;
        this.#handle(socket, method, target, headers, body, identity).finally(() => {
          busy = false;
          pump();
        });
      }
    };
    socket.on("data", onData);
  }

  #authenticate(
    headers: Record<string, string>,
    identity: { user: string; groups: string[] } | undefined,
  ): { user: string; groups: string[] } | undefined {
    const auth = headers["authorization"] ?? "";
    if (auth.startsWith("Bearer ")) {
      const user = this.#opts.tokens?.[auth.slice(7)];
      return user === undefined ? undefined : { user, groups: ["system:authenticated"] };
    }
    return identity;
  }

  async #handle(
    socket: net.Socket,
    method: string,
    target: string,
    headers: Record<string, string>,
    body: string,
    identity: { user: string; groups: string[] } | undefined,
  ): Promise<void> {
    const url = new URL(target, "https://double");
    const who = this.#authenticate(headers, identity);
    const contentType = headers["content-type"];
    const record = (status: number) =>
      this.requests.push({
        method,
        path: url.pathname + url.search,
        user: who?.user ?? "",
        status,
        ...(contentType && body ? { contentType } : {}),
      });
    const reply = (status: number, value: unknown) => {
      record(status);
      const text = JSON.stringify(value);
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Status"}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(text)}\r\nCache-Control: no-cache, private\r\n\r\n${text}`,
      );
    };
    if (!who) return reply(401, status(401, "Unauthorized", "Unauthorized"));
    try {
      const r = this.#route(method, url, body, who, headers["content-type"] ?? "");
      if ("watch" in r) {
        record(200);
        return this.#watch(socket, r.watch);
      }
      reply(r.status, r.body);
    } catch (e) {
      if (e instanceof HttpError) return reply(e.status, e.body);
      reply(500, status(500, "InternalError", String(e)));
    }
    await Promise.resolve();
  }

  #route(
    method: string,
    url: URL,
    body: string,
    who: { user: string; groups: string[] },
    contentType: string,
  ): { status: number; body: unknown } | { watch: Watcher } {
    const p = url.pathname.replace(/\/$/, "");
    if (p === "/version") {
      return {
        status: 200,
        body: {
          major: "1",
          minor: "32",
          gitVersion: this.#opts.gitVersion ?? "v1.32.0-tp-double",
          gitCommit: "0000000000000000000000000000000000000000",
          gitTreeState: "clean",
          buildDate: "2025-01-01T00:00:00Z",
          goVersion: "go1.23.0",
          compiler: "gc",
          platform: "linux/amd64",
        },
      };
    }
    if (p === "/api") {
      return {
        status: 200,
        body: {
          kind: "APIVersions",
          versions: ["v1"],
          serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: new URL(this.url).host }],
        },
      };
    }
    if (p === "/apis") {
      const groups = [...new Set(RESOURCES.filter((r) => r.group).map((r) => `${r.group}/${r.version}`))];
      return {
        status: 200,
        body: {
          kind: "APIGroupList",
          apiVersion: "v1",
          groups: groups.map((gv) => {
            const [name, version] = gv.split("/");
            const v = { groupVersion: gv, version };
            return { name, versions: [v], preferredVersion: v };
          }),
        },
      };
    }
    const m = p.match(/^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))(?:\/(.*))?$/);
    if (!m) throw new HttpError(404, status(404, "NotFound", "the server could not find the requested resource"));
    const group = m[2] ?? "";
    const version = m[1] ?? m[3]!;
    const rest = m[4] ? m[4].split("/") : [];
    if (rest.length === 0) {
      return {
        status: 200,
        body: {
          kind: "APIResourceList",
          apiVersion: "v1",
          groupVersion: group ? `${group}/${version}` : version,
          resources: RESOURCES.filter((r) => r.group === group && r.version === version).flatMap((r) => [
            {
              name: r.plural,
              singularName: r.singular,
              namespaced: r.namespaced,
              kind: r.kind,
              verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
              ...(r.shortNames ? { shortNames: r.shortNames } : {}),
            },
            ...(r.plural === "pods"
              ? [{
                name: "pods/portforward",
                singularName: "",
                namespaced: true,
                kind: "PodPortForwardOptions",
                verbs: ["create", "get"],
              }]
              : []),
          ]),
        },
      };
    }
    let namespace: string | undefined;
    let segs = rest;
    if (segs[0] === "namespaces" && segs.length >= 3) {
      namespace = segs[1];
      segs = segs.slice(2);
    }
    const def = RESOURCES.find((r) => r.group === group && r.version === version && r.plural === segs[0]);
    if (!def || segs.length > 2) {
      throw new HttpError(404, status(404, "NotFound", "the server could not find the requested resource"));
    }
    const name = segs[1];
    const watch = url.searchParams.get("watch") === "true" || url.searchParams.get("watch") === "1";
    const verb = method === "GET"
      ? (name ? "get" : watch ? "watch" : "list")
      : method === "POST"
      ? "create"
      : method === "DELETE"
      ? "delete"
      : method === "PUT"
      ? "update"
      : method.toLowerCase();
    const access: Access = { ...who, verb, resource: def.plural, group, namespace, name };
    if (!(this.#opts.authorize ?? (() => true))(access)) throw new HttpError(403, forbidden(access, def));
    if (contentType.includes("protobuf")) {
      // kubectl's typed commands (`kubectl create secret generic`) send protobuf; this double reads JSON only.
      throw new HttpError(
        415,
        status(415, "UnsupportedMediaType", "the API server test double reads JSON request bodies only, not protobuf"),
      );
    }
    const selector = parseSelector(url.searchParams.get("labelSelector") ?? "");
    const gr = group ? `${def.plural}.${group}` : def.plural;
    if (verb === "list") {
      const items = this.list(def.plural, def.namespaced ? namespace : undefined).filter((o) => matches(o, selector));
      return {
        status: 200,
        body: {
          kind: `${def.kind}List`,
          apiVersion: group ? `${group}/${version}` : version,
          metadata: { resourceVersion: String(this.#rv) },
          items: items.map((o) => ({ ...o, apiVersion: group ? `${group}/${version}` : version, kind: def.kind })),
        },
      };
    }
    if (verb === "watch") {
      return { watch: { def, namespace: def.namespaced ? namespace : undefined, selector, send: () => {} } };
    }
    if (verb === "get" || verb === "delete") {
      const obj = this.get(def.plural, def.namespaced ? namespace : undefined, name!);
      if (!obj) {
        throw new HttpError(
          404,
          status(404, "NotFound", `${gr} "${name}" not found`, { name, kind: def.plural, group }),
        );
      }
      if (verb === "delete") {
        this.remove(def.plural, def.namespaced ? namespace : undefined, name!);
        return { status: 200, body: obj };
      }
      return { status: 200, body: obj };
    }
    if (verb === "create") {
      let obj: Obj;
      try {
        obj = JSON.parse(body);
      } catch {
        throw new HttpError(400, status(400, "BadRequest", "the request body is not JSON"));
      }
      obj.metadata ??= {};
      if (def.namespaced) obj.metadata.namespace ??= namespace;
      const objName = obj.metadata.name as string | undefined;
      if (!objName) {
        throw new HttpError(422, invalid(def.kind, "", "metadata.name", "Required value: name is required"));
      }
      if (def.namespaced && namespace !== "default" && !this.get("namespaces", undefined, namespace!)) {
        throw new HttpError(
          404,
          status(404, "NotFound", `namespaces "${namespace}" not found`, { name: namespace, kind: "namespaces" }),
        );
      }
      if (this.get(def.plural, def.namespaced ? namespace : undefined, objName)) {
        throw new HttpError(
          409,
          status(409, "AlreadyExists", `${gr} "${objName}" already exists`, { name: objName, kind: def.plural, group }),
        );
      }
      obj.apiVersion = group ? `${group}/${version}` : version;
      obj.kind = def.kind;
      if (def.plural === "services") this.#allocateClusterIp(obj);
      this.created.push(structuredClone(obj)); // as the client sent it, before the server's defaults
      normalize(def, obj);
      if (def.group === "apps") obj.metadata.generation = 1;
      this.put(obj);
      if (def.plural === "deployments" && (this.#opts.runDeployments ?? true)) this.#runDeployment(obj);
      return { status: 201, body: obj };
    }
    if (verb === "update" || verb === "patch") {
      const ns = def.namespaced ? namespace : undefined;
      const old = this.get(def.plural, ns, name!);
      if (!old) {
        throw new HttpError(
          404,
          status(404, "NotFound", `${gr} "${name}" not found`, { name, kind: def.plural, group }),
        );
      }
      let next: Obj;
      try {
        next = verb === "update" ? JSON.parse(body) : patched(old, body, contentType);
      } catch (e) {
        if (e instanceof HttpError) throw e;
        if (e instanceof JsonPatchError) {
          // kube-apiserver answers a JSON patch that does not apply with 422 and the patch library's words.
          throw new HttpError(422, status(422, "Invalid", e.message));
        }
        throw new HttpError(400, status(400, "BadRequest", "the request body is not JSON"));
      }
      if (!next || typeof next !== "object" || !next.metadata || typeof next.metadata !== "object") {
        throw new HttpError(400, status(400, "BadRequest", "the request body is not an object with metadata"));
      }
      if (next.metadata.name !== undefined && next.metadata.name !== name) {
        throw new HttpError(
          400,
          status(
            400,
            "BadRequest",
            `the name of the object (${String(next.metadata.name)}) does not match the name ` +
              `on the URL (${name})`,
          ),
        );
      }
      const rv = next.metadata.resourceVersion;
      if (rv !== undefined && rv !== old.metadata.resourceVersion) {
        throw new HttpError(
          409,
          status(
            409,
            "Conflict",
            `Operation cannot be fulfilled on ${gr} "${name}": the object has been modified; please apply your ` +
              `changes to the latest version and try again`,
            { name, kind: def.plural, group },
          ),
        );
      }
      return { status: 200, body: this.#update(def, old, next) };
    }
    throw new HttpError(405, status(405, "MethodNotAllowed", `${method} is not supported by this test double`));
  }

  /** Stores `next` in place of `old` as kube-apiserver would: server-set fields kept, counters bumped on change. */
  #update(def: ResourceDef, old: Obj, next: Obj): Obj {
    next.apiVersion = old.apiVersion ?? (def.group ? `${def.group}/${def.version}` : def.version);
    next.kind = def.kind;
    const md = next.metadata;
    md.name = old.metadata.name;
    if (def.namespaced) md.namespace = old.metadata.namespace;
    md.uid = old.metadata.uid;
    md.creationTimestamp = old.metadata.creationTimestamp;
    md.resourceVersion = old.metadata.resourceVersion;
    if (old.metadata.generation !== undefined) md.generation = old.metadata.generation;
    else delete md.generation;
    if (old.status !== undefined) next.status = old.status;
    else delete next.status;
    if (def.plural === "services") {
      const spec = (next.spec ??= {}) as Record<string, unknown>;
      const was = (old.spec ?? {}) as Record<string, unknown>;
      for (const k of ["clusterIP", "clusterIPs"]) if (was[k] !== undefined) spec[k] = was[k];
    }
    normalize(def, next);
    if (jsonEqual(next, old)) return old;
    if (md.generation !== undefined && !jsonEqual(next.spec, old.spec)) md.generation = Number(md.generation) + 1;
    const templateChanged = !jsonEqual(
      (next.spec as { template?: unknown } | undefined)?.template,
      (old.spec as { template?: unknown } | undefined)?.template,
    );
    this.put(next);
    if (def.plural === "deployments" && templateChanged && (this.#opts.runDeployments ?? true)) {
      for (const pod of this.list("pods", md.namespace as string)) {
        const owners = (pod.metadata.ownerReferences ?? []) as { name?: string }[];
        if (owners.some((o) => o.name === md.name)) {
          this.remove("pods", md.namespace as string, pod.metadata.name as string);
        }
      }
      this.#runDeployment(next);
    }
    return next;
  }

  #allocateClusterIp(svc: Obj): void {
    const spec = (svc.spec ??= {}) as Record<string, unknown>;
    const ip = spec.clusterIP as string | undefined;
    if (ip === "None") return;
    if (ip) {
      const range = this.#serviceCidrs.find((c) => inCidr(ip, c));
      if (!range) {
        const v4 = !ip.includes(":");
        const valid = this.#serviceCidrs.find((c) => !c.includes(":") === v4);
        if (!valid) {
          throw new HttpError(
            422,
            invalid(
              "Service",
              svc.metadata.name as string,
              "spec.ipFamilies[0]",
              `Invalid value: "${v4 ? "IPv4" : "IPv6"}": not configured on this cluster`,
            ),
          );
        }
        // The wording of kube-apiserver's ipallocator ErrNotInRange, wrapped by the service REST storage.
        throw new HttpError(
          422,
          invalid(
            "Service",
            svc.metadata.name as string,
            "spec.clusterIPs",
            `Invalid value: []string{"${ip}"}: failed to allocate IP ${ip}: the provided IP (${ip}) is not in the ` +
              `valid range. The range of valid IPs is ${valid}`,
          ),
        );
      }
      spec.clusterIPs = [ip];
      return;
    }
    const base = this.#serviceCidrs[0]!.split("/")[0]!;
    const parts = base.split(".").map(Number);
    const n = this.#ipNext++;
    const a = `${parts[0]}.${parts[1]}.${parts[2]! + (n >> 8)}.${n & 255}`;
    spec.clusterIP = a;
    spec.clusterIPs = [a];
  }

  #runDeployment(dep: Obj): void {
    const spec = dep.spec as { template?: { metadata?: { labels?: Record<string, string> }; spec?: unknown } };
    const labels = spec.template?.metadata?.labels ?? {};
    const name = `${dep.metadata.name}-${crypto.randomUUID().slice(0, 10)}-x${this.#ipNext++}`;
    // The pod as the API server stores it before any kubelet saw it (Pending, no IP) when a kubelet double runs it.
    this.addPod(dep.metadata.namespace as string, name, {
      labels,
      containers: structuredClone((spec.template?.spec as { containers?: unknown[] })?.containers ?? []),
      ownerReferences: [{ kind: "ReplicaSet", name: dep.metadata.name }],
      ...(this.#kubelet ? { podIP: null, phase: "Pending", ready: false } : {}),
    });
  }

  #watch(socket: net.Socket, w: Watcher): void {
    socket.write(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache, private\r\n\r\n",
    );
    const chunk = (s: string) => socket.write(`${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`);
    w.send = (type, obj) => {
      chunk(
        JSON.stringify({
          type,
          object: { ...obj, apiVersion: w.def.group ? `${w.def.group}/${w.def.version}` : "v1", kind: w.def.kind },
        }) + "\n",
      );
    };
    for (const o of this.list(w.def.plural, w.namespace)) if (matches(o, w.selector)) w.send("ADDED", o);
    this.#watchers.add(w);
    socket.once("close", () => this.#watchers.delete(w));
  }

  // ---- port-forward ------------------------------------------------------------------------------------------------

  #upgrade(
    socket: tls.TLSSocket,
    method: string,
    target: string,
    headers: Record<string, string>,
    head: Buffer,
    identity: { user: string; groups: string[] } | undefined,
  ): void {
    const url = new URL(target, "https://double");
    const who = this.#authenticate(headers, identity);
    const fail = (code: number, value: unknown) => {
      this.requests.push({ method, path: url.pathname + url.search, user: who?.user ?? "", status: code });
      const text = JSON.stringify(value);
      socket.end(
        `HTTP/1.1 ${code} ${STATUS_TEXT[code] ?? "Status"}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
      );
    };
    if (!who) return fail(401, status(401, "Unauthorized", "Unauthorized"));
    const m = url.pathname.match(/^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/portforward$/);
    if (!m) return fail(404, status(404, "NotFound", "the server could not find the requested resource"));
    const [, namespace, name] = m as unknown as [string, string, string];
    const access: Access = { ...who, verb: "create", resource: "pods/portforward", group: "", namespace, name };
    const authorize = this.#opts.authorize ?? (() => true);
    if (!authorize(access)) return fail(403, forbidden(access, RESOURCES.find((r) => r.plural === "pods")!));
    const pod = this.get("pods", namespace, name);
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
    if ((headers["upgrade"] ?? "").toLowerCase() === "spdy/3.1") {
      const versions = (headers["x-stream-protocol-version"] ?? "").split(",").map((v) => v.trim());
      if (!versions.includes("portforward.k8s.io")) {
        return fail(400, status(400, "BadRequest", "unable to upgrade: no common stream protocol"));
      }
      this.requests.push({ method, path: url.pathname + url.search, user: who.user, status: 101 });
      this.spdyUpgrades++;
      socket.write(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n" +
          "X-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n",
      );
      if (head.length) socket.unshift(head);
      return this.#spdyForward(socket, namespace, name, podIP);
    }
    const req = { method, url: target, headers };
    this.#wss.handleUpgrade(req as never, socket as never, head, (ws: WebSocket) => {
      this.requests.push({ method, path: url.pathname + url.search, user: who.user, status: 101 });
      this.webSocketUpgrades++;
      this.#forward(ws, namespace, name, ports, podIP);
    });
  }

  #forward(ws: WebSocket, namespace: string, pod: string, ports: number[], podIP: string): void {
    const conns: (net.Socket | undefined)[] = [];
    const portBytes = (p: number) => [p & 0xff, p >> 8];
    ports.forEach((port, i) => {
      ws.send(Buffer.from([2 * i, ...portBytes(port)]));
      ws.send(Buffer.from([2 * i + 1, ...portBytes(port)]));
      const to = this.#opts.portForwardTarget?.(namespace, pod, port) ?? { host: podIP, port };
      this.portForwardDials++;
      const c = net.connect({ host: to.host, port: to.port });
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

  /** Serves kubectl's SPDY port-forward on a byte stream: a stream pair per forwarded connection. */
  #spdyForward(stream: Duplex, namespace: string, pod: string, podIP: string): void {
    const conn = spdy.connection.create(stream, { protocol: "spdy", isServer: true, windowSize: 1 << 20 });
    conn.start(3.1);
    this.#spdyConns.add(conn);
    stream.on("close", () => this.#spdyConns.delete(conn));
    stream.on("error", () => {});
    const pairs = new Map<string, { error?: SpdyStream; data?: SpdyStream }>();
    conn.on("error", () => {});
    conn.on("stream", (st: SpdyStream) => {
      st.on("error", () => {});
      st.respond(200, {});
      const h = st.headers;
      const id = String(h["requestid"] ?? "");
      const port = Number(h["port"]);
      const pair = pairs.get(id) ?? {};
      pairs.set(id, pair);
      if (h["streamtype"] === "error") pair.error = st;
      else if (h["streamtype"] === "data") pair.data = st;
      if (!pair.error || !pair.data) return;
      pairs.delete(id);
      const to = this.#opts.portForwardTarget?.(namespace, pod, port) ?? { host: podIP, port };
      this.portForwardDials++;
      const c = net.connect({ host: to.host, port: to.port });
      const { error, data } = pair;
      c.on("error", (e: Error) => {
        error.end(`error forwarding port ${port} to pod ${pod}: ${e.message}`);
        data.end();
      });
      data.pipe(c);
      c.pipe(data);
      data.on("close", () => c.destroy());
    });
  }

  /** Cuts every port-forward connection at once, as an API server that restarts does; returns how many. */
  dropPortForwards(): number {
    const n = this.#wss.clients.size + this.#spdyConns.size;
    for (const ws of this.#wss.clients) ws.terminate();
    for (const c of this.#spdyConns) c.destroyStreams();
    return n;
  }

  /** Open port-forward WebSockets (for tests that check a stream closed). */
  get openWebSockets(): number {
    return this.#wss.clients.size;
  }

  async close(): Promise<void> {
    for (const ws of this.#wss.clients) ws.terminate();
    for (const c of this.#spdyConns) c.destroyStreams();
    this.#watchers.clear();
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

class HttpError extends Error {
  constructor(readonly status: number, readonly body: unknown) {
    super(`HTTP ${status}`);
  }
}

const STATUS_TEXT: Record<number, string> = {
  200: "OK",
  201: "Created",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  415: "Unsupported Media Type",
  422: "Unprocessable Entity",
  500: "Internal Server Error",
};

/** The object after a PATCH, by its content type. */
function patched(old: Obj, body: string, contentType: string): Obj {
  const type = contentType.split(";")[0]!.trim().toLowerCase();
  if (type === "application/json-patch+json") {
    const ops = JSON.parse(body) as JsonPatchOp[];
    if (!Array.isArray(ops)) throw new HttpError(400, status(400, "BadRequest", "a JSON patch must be an array"));
    return applyJsonPatch(old, ops);
  }
  if (type === "application/merge-patch+json") return mergePatch(structuredClone(old), JSON.parse(body)) as Obj;
  // kube-apiserver's words for a patch type a resource does not take (as for a custom resource's strategic merge).
  throw new HttpError(
    415,
    status(
      415,
      "UnsupportedMediaType",
      `the body of the request was in an unknown format - accepted media types include: ` +
        `application/json-patch+json, application/merge-patch+json`,
    ),
  );
}

/** JSON merge patch (RFC 7386 section 2): objects merge member by member, null removes, anything else replaces. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== "object" || patch === null || Array.isArray(patch)) return patch;
  const out = (typeof target === "object" && target !== null && !Array.isArray(target) ? target : {}) as Record<
    string,
    unknown
  >;
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** What kube-apiserver does to every write of these kinds: defaults, and a Secret's stringData folded into data. */
function normalize(def: ResourceDef, obj: Obj): void {
  if (def.plural === "secrets" && obj.stringData && typeof obj.stringData === "object") {
    const data = (obj.data ??= {}) as Record<string, string>;
    for (const [k, v] of Object.entries(obj.stringData as Record<string, string>)) {
      data[k] = Buffer.from(String(v)).toString("base64");
    }
    delete obj.stringData;
  }
  if (def.plural === "services") {
    const ports = ((obj.spec ?? {}) as { ports?: Record<string, unknown>[] }).ports ?? [];
    for (const p of ports) {
      p.protocol ??= "TCP";
      p.targetPort ??= p.port;
    }
  }
}

function status(code: number, reason: string, message: string, details?: Record<string, unknown>) {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
    ...(details ? { details } : {}),
    code,
  };
}

/** kube-apiserver's forbidden message (k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go). */
function forbidden(a: Access, def: ResourceDef) {
  const res = a.group ? `"${a.resource}" in API group "${a.group}"` : `"${a.resource}" in API group ""`;
  const scope = a.namespace ? ` in the namespace "${a.namespace}"` : " at the cluster scope";
  const subject = a.name ? `${a.resource.split("/")[0]}${a.group ? "." + a.group : ""} "${a.name}"` : `${def.plural}`;
  return status(
    403,
    "Forbidden",
    `${subject} is forbidden: User "${a.user}" cannot ${a.verb} resource ${res}${scope}`,
    {
      ...(a.name ? { name: a.name } : {}),
      ...(a.group ? { group: a.group } : {}),
      kind: a.resource.split("/")[0],
    },
  );
}

function invalid(kind: string, name: string, field: string, detail: string) {
  return status(422, "Invalid", `${kind} "${name}" is invalid: ${field}: ${detail}`, {
    name,
    kind,
    causes: [{ reason: "FieldValueInvalid", message: detail, field }],
  });
}

function defOf(obj: Obj): ResourceDef {
  const def = RESOURCES.find((r) => r.kind === obj.kind);
  if (!def) throw new TypeError(`The API server double does not serve kind "${String(obj.kind)}"`);
  return def;
}

function parseSelector(s: string): [string, string][] {
  return s.split(",").filter((x) => x).map((term) => {
    const [k, v] = term.split(/==?/);
    return [k!.trim(), (v ?? "").trim()];
  });
}

function matches(obj: Obj, selector: [string, string][]): boolean {
  const labels = (obj.metadata.labels ?? {}) as Record<string, string>;
  return selector.every(([k, v]) => labels[k] === v);
}

/** Whether IPv4 or IPv6 `ip` is in `cidr`. */
export function inCidr(ip: string, cidr: string): boolean {
  const [base, bitsText] = cidr.split("/");
  const a = ipBytes(ip);
  const b = ipBytes(base!);
  if (!a || !b || a.length !== b.length) return false;
  let bits = Number(bitsText);
  for (let i = 0; i < a.length && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((a[i]! & mask) !== (b[i]! & mask)) return false;
  }
  return true;
}

function ipBytes(ip: string): number[] | undefined {
  if (net.isIPv4(ip)) return ip.split(".").map(Number);
  if (!net.isIPv6(ip)) return undefined;
  const [l, r] = ip.includes("::") ? ip.split("::") : [ip, undefined];
  const left = l ? l.split(":") : [];
  const right = r ? r.split(":") : [];
  const groups = [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  return groups.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
}
