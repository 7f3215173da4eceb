/**
 * The kinds of object the API server double serves (RESOURCES: group, version, plural, kind, scope), the shape of an
 * object and of a request in RBAC's words, and the pure helpers on objects: the kind's definition, label selectors,
 * the defaults kube-apiserver applies on every write, and a pod or node as a test seeds it. Nothing here keeps state.
 */
import { Buffer } from "node:buffer";

/** An object as the double stores it: any JSON with metadata. */
export type Obj = Record<string, unknown> & { metadata: Record<string, unknown> };

export interface ResourceDef {
  group: string; // "" for core
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
  shortNames?: string[];
  singular: string;
}

export const RESOURCES: ResourceDef[] = [
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

export function defOf(obj: Obj): ResourceDef {
  const def = RESOURCES.find((r) => r.kind === obj.kind);
  if (!def) throw new TypeError(`The API server double does not serve kind "${String(obj.kind)}"`);
  return def;
}

/** A labelSelector of equalities ("a=b,c==d") as [key, value] pairs. */
export function parseSelector(s: string): [string, string][] {
  return s.split(",").filter((x) => x).map((term) => {
    const [k, v] = term.split(/==?/);
    return [k!.trim(), (v ?? "").trim()];
  });
}

export function matches(obj: Obj, selector: [string, string][]): boolean {
  const labels = (obj.metadata.labels ?? {}) as Record<string, string>;
  return selector.every(([k, v]) => labels[k] === v);
}

/** What kube-apiserver does to every write of these kinds: defaults, and a Secret's stringData folded into data. */
export function normalize(def: ResourceDef, obj: Obj): void {
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

export interface PodOptions {
  labels?: Record<string, string>;
  /** null: none yet (a Pending pod). Default 127.0.0.1. */
  podIP?: string | null;
  ready?: boolean;
  phase?: string;
  ports?: number[];
  containers?: unknown[];
  ownerReferences?: unknown[];
}

/** A pod as a kubelet would report it: Running and Ready unless told otherwise. */
export function podObject(namespace: string, name: string, o: PodOptions): Obj {
  const ready = o.ready ?? true;
  const ip = o.podIP === null ? {} : { podIP: o.podIP ?? "127.0.0.1", podIPs: [{ ip: o.podIP ?? "127.0.0.1" }] };
  return {
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
  };
}

/** A Ready node with these pod CIDRs. */
export function nodeObject(name: string, podCIDRs: string[]): Obj {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name },
    spec: podCIDRs.length ? { podCIDR: podCIDRs[0], podCIDRs } : {},
    status: { conditions: [{ type: "Ready", status: "True" }] },
  };
}
