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
 *
 * This file keeps the store, the watchers and the wiring; the rest has files of its own (tests/k8s_apiserver_*.ts):
 * objects (the kinds served, pure object helpers), http (HTTP/1.1, authentication), route (a verb's answer), with
 * discovery, patch and status (Status answers), cluster_ip, portforward (with spdy, for kubectl) and kubeconfig.
 */
import tls from "node:tls";
import type net from "node:net";
import { X509Certificate } from "node:crypto";
import { jsonEqual } from "../k8s/json_patch.ts";
import type { TestPki } from "./k8s_certs.ts";
import { allocateClusterIp } from "./k8s_apiserver_cluster_ip.ts";
import {
  authenticate,
  certIdentity,
  type Identity,
  jsonResponse,
  readRequests,
  startChunked,
} from "./k8s_apiserver_http.ts";
import { kubeconfig, type KubeconfigOptions } from "./k8s_apiserver_kubeconfig.ts";
import {
  type Access,
  defOf,
  matches,
  nodeObject,
  normalize,
  type Obj,
  podObject,
  type PodOptions,
  type ResourceDef,
  RESOURCES,
} from "./k8s_apiserver_objects.ts";
import { PortForwards } from "./k8s_apiserver_portforward.ts";
import { type DoubleApi, route, type WatchRequest } from "./k8s_apiserver_route.ts";
import { HttpError, status } from "./k8s_apiserver_status.ts";

export type { Access } from "./k8s_apiserver_objects.ts";
export { inCidr } from "./k8s_apiserver_cluster_ip.ts";

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

interface Watcher extends WatchRequest {
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
  /** Objects created through the API (not those the test seeded or the double made), in order. */
  readonly created: Obj[] = [];

  #server: tls.Server;
  #sockets = new Set<net.Socket>();
  #store = new Map<string, Obj>(); // key: plural/namespace/name
  #watchers = new Set<Watcher>();
  #rv = 1;
  #ca: X509Certificate;
  #opts: ApiServerDoubleOptions;
  #serviceCidrs: string[];
  #ipNext = 10;
  #kubelet: PodRunner | undefined;
  #portForwards: PortForwards;
  #api: DoubleApi;

  private constructor(server: tls.Server, url: string, opts: ApiServerDoubleOptions) {
    this.#server = server;
    this.url = url;
    this.#opts = opts;
    this.#ca = new X509Certificate(opts.pki.caCert);
    this.#serviceCidrs = opts.serviceCidrs ?? ["10.96.0.0/12"];
    const authorize = (a: Access) => (this.#opts.authorize ?? (() => true))(a);
    this.#portForwards = new PortForwards({
      pod: (namespace, name) => this.get("pods", namespace, name),
      authorize,
      target: opts.portForwardTarget,
    });
    this.#api = {
      host: new URL(url).host,
      gitVersion: opts.gitVersion ?? "v1.32.0-tp-double",
      authorize,
      get: (plural, namespace, name) => this.get(plural, namespace, name),
      list: (plural, namespace) => this.list(plural, namespace),
      remove: (plural, namespace, name) => this.remove(plural, namespace, name),
      resourceVersion: () => String(this.#rv),
      create: (def, obj) => this.#create(def, obj),
      update: (def, old, next) => this.#update(def, old, next),
    };
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
  kubeconfig(o: KubeconfigOptions = {}): string {
    return kubeconfig(this.url, this.#opts.pki, o);
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
  addPod(namespace: string, name: string, o: PodOptions = {}): Obj {
    return this.put(podObject(namespace, name, o));
  }

  addNode(name: string, podCIDRs: string[] = []): Obj {
    return this.put(nodeObject(name, podCIDRs));
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

  /** Stores an object a client created, as kube-apiserver would: a clusterIP, defaults, a Deployment's pod. */
  #create(def: ResourceDef, obj: Obj): void {
    if (def.plural === "services") this.#ipNext = allocateClusterIp(obj, this.#serviceCidrs, this.#ipNext);
    this.created.push(structuredClone(obj)); // as the client sent it, before the server's defaults
    normalize(def, obj);
    if (def.group === "apps") obj.metadata.generation = 1;
    this.put(obj);
    if (def.plural === "deployments" && (this.#opts.runDeployments ?? true)) this.#runDeployment(obj);
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

  // ---- HTTP/1.1 ----------------------------------------------------------------------------------------------------

  #accept(socket: tls.TLSSocket): void {
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
    socket.on("error", () => {});
    const identity = certIdentity(socket, this.#ca);
    readRequests(socket, {
      request: (method, target, headers, body) => this.#handle(socket, method, target, headers, body, identity),
      upgrade: (method, target, headers, head) => {
        const url = new URL(target, "https://double");
        const who = authenticate(headers, this.#opts.tokens, identity);
        const record = (status: number) =>
          this.requests.push({ method, path: url.pathname + url.search, user: who?.user ?? "", status });
        this.#portForwards.upgrade(socket, { method, target, headers, head, who, record });
      },
    });
  }

  async #handle(
    socket: net.Socket,
    method: string,
    target: string,
    headers: Record<string, string>,
    body: string,
    identity: Identity | undefined,
  ): Promise<void> {
    const url = new URL(target, "https://double");
    const who = authenticate(headers, this.#opts.tokens, identity);
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
      socket.write(jsonResponse(status, value, "Cache-Control: no-cache, private"));
    };
    if (!who) return reply(401, status(401, "Unauthorized", "Unauthorized"));
    try {
      const r = route({ method, url, body, who, contentType: headers["content-type"] ?? "" }, this.#api);
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

  #watch(socket: net.Socket, r: WatchRequest): void {
    const chunk = startChunked(socket);
    const w: Watcher = {
      ...r,
      send: (type, obj) => {
        chunk(
          JSON.stringify({
            type,
            object: { ...obj, apiVersion: w.def.group ? `${w.def.group}/${w.def.version}` : "v1", kind: w.def.kind },
          }) + "\n",
        );
      },
    };
    for (const o of this.list(w.def.plural, w.namespace)) if (matches(o, w.selector)) w.send("ADDED", o);
    this.#watchers.add(w);
    socket.once("close", () => this.#watchers.delete(w));
  }

  // ---- port-forward (k8s_apiserver_portforward.ts) ------------------------------------------------------------------

  /** WebSocket port-forward connections accepted. */
  get webSocketUpgrades(): number {
    return this.#portForwards.webSocketUpgrades;
  }

  /** kubectl's SPDY port-forward connections accepted. */
  get spdyUpgrades(): number {
    return this.#portForwards.spdyUpgrades;
  }

  /** Port-forward TCP connections made to targets. */
  get portForwardDials(): number {
    return this.#portForwards.dials;
  }

  /** Cuts every port-forward connection at once, as an API server that restarts does; returns how many. */
  dropPortForwards(): number {
    return this.#portForwards.drop();
  }

  /** Open port-forward WebSockets (for tests that check a stream closed). */
  get openWebSockets(): number {
    return this.#portForwards.openWebSockets;
  }

  async close(): Promise<void> {
    this.#portForwards.close();
    this.#watchers.clear();
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
