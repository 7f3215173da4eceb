/**
 * Putting the traffic-agent in a workload's pods, and taking it out, as plans: pure functions from the objects as the
 * API server returns them to JSON patches (RFC 6902, k8s/json_patch.ts) and the agent's Secret. k8s/agent_install.ts
 * sends them; `tp intercept --dry-run -o yaml` prints them (`injectionYaml`).
 *
 * What injection changes, and nothing else:
 * - the workload's pod template gets a container `tp-agent` (the image `tp install` runs, args ["agent"]) that sees
 *   what the app container sees: its env and envFrom, its volume mounts at the same paths, plus TP_AGENT_* settings;
 * - each Service port that targets the app container is re-pointed to an agent port (9900 and up, free in the pod);
 *   the agent relays it to the app's port unless it is intercepted. No firewall rules, no capabilities;
 * - a Secret `tp-agent-<workload>` holds the agent's credential for the manager's agent port;
 * - annotations record what changed: `tp.dev/agent` on the workload, `tp.dev/original-target-ports` on each Service,
 *   so that removal puts back exactly the values tp replaced (and leaves alone what someone changed since).
 *
 * Kubernetes' own field names are used throughout; a typed view is @kubernetes/client-node's model types.
 */
import type {
  V1Container,
  V1ContainerPort,
  V1EnvVar,
  V1ObjectMeta,
  V1PodTemplateSpec,
  V1Secret,
  V1Service,
  V1VolumeMount,
} from "@kubernetes/client-node";
import { Document } from "yaml";
import { DEFAULT_AGENT_PORT, MANAGER_SERVICE } from "./defaults.ts";
import { K8sError } from "./errors.ts";
import { type JsonPatchOp, pointer } from "./json_patch.ts";
import { commonLabels } from "./manifests.ts";

export const AGENT_CONTAINER = "tp-agent";
/** On the workload: JSON of `AgentRecord`, what tp added. */
export const AGENT_ANNOTATION = "tp.dev/agent";
/** On each re-pointed Service: JSON of `ServiceRecord`, the targetPorts tp replaced. */
export const ORIGINAL_TARGET_PORTS_ANNOTATION = "tp.dev/original-target-ports";
/** The Secret's key holding the agent's token. */
export const AGENT_TOKEN_KEY = "token";
/** The first agent port; the next free ones follow. */
export const AGENT_PORT_BASE = 9900;
/** The component label on tp's agent Secrets (with commonLabels()), for finding them all. */
export const AGENT_SECRET_COMPONENT = "agent-credential";

/** The kinds tp injects into: all apps/v1, each with a pod template at spec.template. */
export type WorkloadKind = "Deployment" | "StatefulSet" | "ReplicaSet";
export const WORKLOAD_KINDS: readonly WorkloadKind[] = ["Deployment", "StatefulSet", "ReplicaSet"];

/** The part of a Deployment, StatefulSet or ReplicaSet injection reads. */
export interface Workload {
  metadata?: V1ObjectMeta | undefined;
  spec?: { template?: V1PodTemplateSpec | undefined } | undefined;
}

/** The Secret holding a workload's agent credential. */
export function agentSecretName(workload: string): string {
  return `tp-agent-${workload}`;
}

/** Where agents reach the manager inside the cluster: its Service's agent port. */
export function agentManagerUrl(managerNamespace: string, port: number = DEFAULT_AGENT_PORT): string {
  return `http://${MANAGER_SERVICE}.${managerNamespace}:${port}`;
}

/** `deployment/echo`, as kubectl names it; the annotations use it. */
export function workloadRef(kind: WorkloadKind, name: string): string {
  return `${kind.toLowerCase()}/${name}`;
}

/** One agent port and the app port it relays to. */
export interface ForwardPair {
  agentPort: number;
  appPort: number;
}

/** What `tp.dev/agent` on the workload records. */
export interface AgentRecord {
  version: 1;
  container: string;
  appContainer: string;
  secret: string;
  services: string[];
  forward: ForwardPair[];
}

/** One Service port tp re-pointed; `targetPort: null` when the port had none. */
export interface ServicePortRecord {
  port: number;
  protocol: string;
  targetPort: number | string | null;
  agentPort: number;
}

/** What `tp.dev/original-target-ports` on a Service records. */
export interface ServiceRecord {
  workload: string;
  ports: ServicePortRecord[];
}

/** A JSON patch for one object. */
export interface ObjectPatch {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
  ops: JsonPatchOp[];
}

export interface InjectionInput {
  kind: WorkloadKind;
  workload: Workload;
  /** The namespace's Services; the plan re-points those whose selector picks the workload's pods. */
  services: readonly V1Service[];
  /** The agent's image: the manager's (the same executable). */
  image: string;
  /** agentManagerUrl(managerNamespace). */
  managerUrl: string;
  /** The agent's credential; `injectionYaml` never prints it. */
  token: string;
  /** The app container; default the one the Services target, else the first. */
  container?: string | undefined;
}

export interface InjectionPlan {
  kind: WorkloadKind;
  name: string;
  namespace: string;
  appContainer: string;
  forward: ForwardPair[];
  /** The app's volume mount paths, mounted at the same paths in the agent. */
  mounts: string[];
  /** The agent container added to the pod template. */
  container: V1Container;
  secret: V1Secret;
  workloadPatch: ObjectPatch;
  servicePatches: ObjectPatch[];
}

const APPS_V1 = "apps/v1";

function metaOf(w: Workload, what: string): { name: string; namespace: string; meta: V1ObjectMeta } {
  const meta = w.metadata;
  if (!meta?.name || !meta.namespace) throw new TypeError(`${what} has no metadata.name or metadata.namespace`);
  return { name: meta.name, namespace: meta.namespace, meta };
}

function containersOf(w: Workload): V1Container[] {
  return w.spec?.template?.spec?.containers ?? [];
}

/** Whether the workload's pods have (or are getting) the agent: tp's annotation or its container. */
export function hasAgent(w: Workload): boolean {
  return w.metadata?.annotations?.[AGENT_ANNOTATION] !== undefined ||
    containersOf(w).some((c) => c.name === AGENT_CONTAINER);
}

/** The record tp left on an injected workload, or undefined (none, or not tp's JSON). */
export function agentRecord(w: Workload): AgentRecord | undefined {
  const text = w.metadata?.annotations?.[AGENT_ANNOTATION];
  if (text === undefined) return undefined;
  try {
    const r = JSON.parse(text) as AgentRecord;
    return r && r.version === 1 && Array.isArray(r.forward) ? r : undefined;
  } catch {
    return undefined;
  }
}

/** A Service's record of the ports tp re-pointed, or undefined. */
export function serviceRecord(svc: V1Service): ServiceRecord | undefined {
  const text = svc.metadata?.annotations?.[ORIGINAL_TARGET_PORTS_ANNOTATION];
  if (text === undefined) return undefined;
  try {
    const r = JSON.parse(text) as ServiceRecord;
    return r && typeof r.workload === "string" && Array.isArray(r.ports) ? r : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a Service's selector picks pods with these labels (an empty or absent selector picks none). */
export function selectsPods(svc: V1Service, podLabels: Record<string, string>): boolean {
  const sel = svc.spec?.selector;
  if (!sel || Object.keys(sel).length === 0) return false;
  return Object.entries(sel).every(([k, v]) => podLabels[k] === v);
}

/** A port the Service targets in the pod: the app port it resolves to in `app`, or undefined when not the app's. */
function appPortOf(target: number | string, app: V1Container, others: V1Container[]): number | undefined {
  if (typeof target === "string") return app.ports?.find((p) => p.name === target)?.containerPort;
  if (app.ports?.some((p) => p.containerPort === target)) return target;
  // A port no container declares is still served in the pod's network namespace: the app's, unless another
  // container declares it.
  return others.some((c) => c.ports?.some((p) => p.containerPort === target)) ? undefined : target;
}

function isTcp(p: { protocol?: string | undefined }): boolean {
  return (p.protocol ?? "TCP") === "TCP";
}

function chooseApp(containers: V1Container[], services: V1Service[], wanted: string | undefined, ref: string) {
  if (wanted !== undefined) {
    const c = containers.find((c) => c.name === wanted);
    if (!c) {
      throw new K8sError(
        "agent",
        `${ref} has no container "${wanted}" (it has ${containers.map((c) => `"${c.name}"`).join(", ")})`,
      );
    }
    return c;
  }
  if (containers.length === 1) return containers[0]!;
  for (const svc of services) {
    for (const sp of svc.spec?.ports ?? []) {
      if (!isTcp(sp)) continue;
      const target = sp.targetPort ?? sp.port;
      const c = containers.find((c) =>
        c.ports?.some((p) => typeof target === "string" ? p.name === target : p.containerPort === target)
      );
      if (c) return c;
    }
  }
  return containers[0]!;
}

/** The agent's ports: AGENT_PORT_BASE and up, skipping every port the pod or the Services already use. */
function agentPorts(count: number, used: Set<number>): number[] {
  const out: number[] = [];
  for (let p = AGENT_PORT_BASE; out.length < count && p < 65536; p++) if (!used.has(p)) out.push(p);
  if (out.length < count) throw new RangeError(`No free agent port from ${AGENT_PORT_BASE}`);
  return out;
}

/** The agent's env: the app's own first (so the agent sees the app's environment), then tp's settings. */
function agentEnv(app: V1Container, o: {
  managerUrl: string;
  secret: string;
  workload: string;
  forward: ForwardPair[];
  mounts: string[];
}): V1EnvVar[] {
  const own = (app.env ?? []).filter((e) => !e.name.startsWith("TP_AGENT_")).map((e) => {
    const copy = structuredClone(e);
    // A resourceFieldRef without containerName means "this container": keep it meaning the app's.
    const rf = copy.valueFrom?.resourceFieldRef;
    if (rf && !rf.containerName) rf.containerName = app.name;
    return copy;
  });
  const field = (fieldPath: string) => ({ valueFrom: { fieldRef: { fieldPath } } });
  return [
    ...own,
    { name: "TP_AGENT_MANAGER_URL", value: o.managerUrl },
    { name: "TP_AGENT_TOKEN", valueFrom: { secretKeyRef: { name: o.secret, key: AGENT_TOKEN_KEY } } },
    { name: "TP_AGENT_NAMESPACE", ...field("metadata.namespace") },
    { name: "TP_AGENT_POD_NAME", ...field("metadata.name") },
    { name: "TP_AGENT_POD_IP", ...field("status.podIP") },
    { name: "TP_AGENT_WORKLOAD", value: o.workload },
    { name: "TP_AGENT_FORWARD", value: o.forward.map((f) => `${f.agentPort}:${f.appPort}`).join(",") },
    { name: "TP_AGENT_MOUNTS", value: o.mounts.join(",") },
  ];
}

function agentMounts(app: V1Container): V1VolumeMount[] {
  return (app.volumeMounts ?? []).map((m) => {
    const out: V1VolumeMount = { name: m.name, mountPath: m.mountPath };
    if (m.readOnly !== undefined) out.readOnly = m.readOnly;
    if (m.subPath !== undefined) out.subPath = m.subPath;
    if (m.subPathExpr !== undefined) out.subPathExpr = m.subPathExpr;
    if (m.recursiveReadOnly !== undefined) out.recursiveReadOnly = m.recursiveReadOnly;
    // mountPropagation is left out: Bidirectional needs a privileged container, which the agent is not.
    return out;
  });
}

/** Ops that set one annotation, creating the annotations map when the object has none. */
function addAnnotation(meta: V1ObjectMeta, key: string, value: string): JsonPatchOp {
  return meta.annotations
    ? { op: "add", path: pointer("metadata", "annotations", key), value }
    : { op: "add", path: pointer("metadata", "annotations"), value: { [key]: value } };
}

/**
 * Ops that remove one annotation; the whole map when it was the only one (the API server never returns an empty
 * map, so an object tp annotated had none before).
 */
function removeAnnotation(meta: V1ObjectMeta, key: string): JsonPatchOp[] {
  const annotations = meta.annotations ?? {};
  if (!Object.hasOwn(annotations, key)) return [];
  const path = pointer("metadata", "annotations", key);
  if (Object.keys(annotations).length === 1) {
    return [{ op: "test", path, value: annotations[key] }, { op: "remove", path: pointer("metadata", "annotations") }];
  }
  return [{ op: "remove", path }];
}

/** The changes that put the agent in a workload's pods. Throws K8sError("agent") when it cannot. */
export function planInjection(input: InjectionInput): InjectionPlan {
  const { name, namespace, meta } = metaOf(input.workload, input.kind);
  const ref = workloadRef(input.kind, name);
  if (hasAgent(input.workload)) throw new K8sError("agent", `${ref} already has tp's agent`);
  const owner = meta.ownerReferences?.find((o) => o.controller);
  if (input.kind === "ReplicaSet" && owner) {
    throw new K8sError(
      "agent",
      `${ref} is managed by ${owner.kind.toLowerCase()}/${owner.name}, which would undo the change: ` +
        `intercept ${owner.kind.toLowerCase()}/${owner.name} instead`,
    );
  }
  const template = input.workload.spec?.template;
  const containers = template?.spec?.containers ?? [];
  if (containers.length === 0) throw new K8sError("agent", `${ref} has no containers in its pod template`);
  const podLabels = template?.metadata?.labels ?? {};
  const selecting = input.services.filter((s) => selectsPods(s, podLabels));
  for (const svc of selecting) {
    const rec = serviceRecord(svc);
    if (rec && rec.workload !== ref) {
      throw new K8sError(
        "agent",
        `service/${svc.metadata?.name} already routes to tp's agent in ${rec.workload}: ` +
          `run tp uninstall --agent ${rec.workload.split("/")[1]} first`,
      );
    }
  }
  const app = chooseApp(containers, selecting, input.container, ref);
  const others = containers.filter((c) => c !== app);

  // Which app ports the Services reach, in the order they first appear.
  const appPorts: number[] = [];
  const targets: { svc: V1Service; index: number; appPort: number }[] = [];
  for (const svc of selecting) {
    (svc.spec?.ports ?? []).forEach((sp, index) => {
      if (!isTcp(sp)) return;
      const appPort = appPortOf(sp.targetPort ?? sp.port, app, others);
      if (appPort === undefined) return;
      if (!appPorts.includes(appPort)) appPorts.push(appPort);
      targets.push({ svc, index, appPort });
    });
  }
  const used = new Set<number>();
  for (const c of containers) for (const p of c.ports ?? []) used.add(p.containerPort);
  for (const svc of selecting) {
    for (const sp of svc.spec?.ports ?? []) if (typeof sp.targetPort === "number") used.add(sp.targetPort);
  }
  for (const p of appPorts) used.add(p);
  const free = agentPorts(appPorts.length, used);
  const forward: ForwardPair[] = appPorts.map((appPort, i) => ({ agentPort: free[i]!, appPort }));
  const agentPortOf = (appPort: number) => forward.find((f) => f.appPort === appPort)!.agentPort;

  const secret = agentSecretName(name);
  const mounts = agentMounts(app);
  const mountPaths = mounts.map((m) => m.mountPath);
  const appSecurity = app.securityContext;
  const container: V1Container = {
    name: AGENT_CONTAINER,
    image: input.image,
    args: ["agent"],
    ports: forward.map((f, i): V1ContainerPort => ({ name: `tp-agent-${i}`, containerPort: f.agentPort })),
    env: agentEnv(app, { managerUrl: input.managerUrl, secret, workload: name, forward, mounts: mountPaths }),
    ...(app.envFrom?.length ? { envFrom: structuredClone(app.envFrom) } : {}),
    ...(mounts.length ? { volumeMounts: mounts } : {}),
    resources: { requests: { cpu: "10m", memory: "64Mi" }, limits: { memory: "256Mi" } },
    securityContext: {
      // The app's user, when it names one, so the agent may read the app's files; else the pod's or the image's
      // (a numeric non-root user, so runAsNonRoot pods accept it).
      ...(appSecurity?.runAsUser !== undefined ? { runAsUser: appSecurity.runAsUser } : {}),
      ...(appSecurity?.runAsGroup !== undefined ? { runAsGroup: appSecurity.runAsGroup } : {}),
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
    },
  };

  const services = [...new Set(targets.map((t) => t.svc))];
  const record: AgentRecord = {
    version: 1,
    container: AGENT_CONTAINER,
    appContainer: app.name,
    secret,
    services: services.map((s) => s.metadata!.name!),
    forward,
  };
  const workloadPatch: ObjectPatch = {
    apiVersion: APPS_V1,
    kind: input.kind,
    name,
    namespace,
    ops: [
      { op: "add", path: pointer("spec", "template", "spec", "containers", "-"), value: container },
      addAnnotation(meta, AGENT_ANNOTATION, JSON.stringify(record)),
    ],
  };
  const servicePatches = services.map((svc): ObjectPatch => {
    const ports = svc.spec!.ports!;
    const mine = targets.filter((t) => t.svc === svc);
    const ops: JsonPatchOp[] = [];
    const records: ServicePortRecord[] = [];
    for (const t of mine) {
      const sp = ports[t.index]!;
      const agentPort = agentPortOf(t.appPort);
      const path = pointer("spec", "ports", t.index, "targetPort");
      records.push({ port: sp.port, protocol: sp.protocol ?? "TCP", targetPort: sp.targetPort ?? null, agentPort });
      if (sp.targetPort === undefined) {
        ops.push({ op: "add", path, value: agentPort });
      } else {
        ops.push({ op: "test", path, value: sp.targetPort }, { op: "replace", path, value: agentPort });
      }
    }
    const rec: ServiceRecord = { workload: ref, ports: records };
    ops.push(addAnnotation(svc.metadata!, ORIGINAL_TARGET_PORTS_ANNOTATION, JSON.stringify(rec)));
    return { apiVersion: "v1", kind: "Service", name: svc.metadata!.name!, namespace, ops };
  });

  return {
    kind: input.kind,
    name,
    namespace,
    appContainer: app.name,
    forward,
    mounts: mountPaths,
    container,
    secret: agentSecret(name, namespace, input.token, {
      kind: input.kind,
      uid: meta.uid,
    }),
    workloadPatch,
    servicePatches,
  };
}

/**
 * The agent's Secret: tp's labels, and owned by the workload (when its uid is known) so that deleting the workload
 * deletes the credential too.
 */
export function agentSecret(
  workload: string,
  namespace: string,
  token: string,
  owner: { kind: WorkloadKind; uid?: string | undefined },
): V1Secret {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      name: agentSecretName(workload),
      namespace,
      labels: { ...commonLabels(), "app.kubernetes.io/component": AGENT_SECRET_COMPONENT },
      annotations: { [AGENT_ANNOTATION]: workloadRef(owner.kind, workload) },
      ...(owner.uid
        ? { ownerReferences: [{ apiVersion: APPS_V1, kind: owner.kind, name: workload, uid: owner.uid }] }
        : {}),
    },
    type: "Opaque",
    data: { [AGENT_TOKEN_KEY]: btoa(token) },
  };
}

export interface RemovalPlan {
  /** Undefined when the workload has nothing of tp's. */
  workloadPatch: ObjectPatch | undefined;
  servicePatches: ObjectPatch[];
  /** The Secret to delete (it may already be gone). */
  secret: string;
}

/**
 * The changes that take the agent out and put back what injection replaced. A Service port whose targetPort someone
 * changed since tp re-pointed it keeps the new value; only the annotation goes.
 */
export function planRemoval(kind: WorkloadKind, workload: Workload, services: readonly V1Service[]): RemovalPlan {
  const { name, namespace, meta } = metaOf(workload, kind);
  const ref = workloadRef(kind, name);
  const ops: JsonPatchOp[] = [];
  const index = containersOf(workload).findIndex((c) => c.name === AGENT_CONTAINER);
  if (index >= 0) {
    const path = pointer("spec", "template", "spec", "containers", index);
    ops.push({ op: "test", path: `${path}/name`, value: AGENT_CONTAINER }, { op: "remove", path });
  }
  ops.push(...removeAnnotation(meta, AGENT_ANNOTATION));
  const servicePatches: ObjectPatch[] = [];
  for (const svc of services) {
    const rec = serviceRecord(svc);
    if (!rec || rec.workload !== ref || !svc.metadata?.name) continue;
    const sops: JsonPatchOp[] = [];
    const ports = svc.spec?.ports ?? [];
    for (const r of rec.ports) {
      const i = ports.findIndex((p) => p.port === r.port && (p.protocol ?? "TCP") === r.protocol);
      if (i < 0 || ports[i]!.targetPort !== r.agentPort) continue;
      const path = pointer("spec", "ports", i, "targetPort");
      sops.push({ op: "test", path, value: r.agentPort });
      sops.push(r.targetPort === null ? { op: "remove", path } : { op: "replace", path, value: r.targetPort });
    }
    sops.push(...removeAnnotation(svc.metadata, ORIGINAL_TARGET_PORTS_ANNOTATION));
    servicePatches.push({ apiVersion: "v1", kind: "Service", name: svc.metadata.name, namespace, ops: sops });
  }
  return {
    workloadPatch: ops.length ? { apiVersion: APPS_V1, kind, name, namespace, ops } : undefined,
    servicePatches,
    secret: agentSecretName(name),
  };
}

/**
 * What `tp intercept WORKLOAD --dry-run -o yaml` prints: the Secret (its token left out) and each object's JSON
 * patch, as YAML documents, each with a comment saying how kubectl would apply it.
 */
export function injectionYaml(plan: InjectionPlan): string {
  const docs: Document[] = [];
  const secret = structuredClone(plan.secret);
  delete secret.data;
  const sdoc = new Document(secret);
  sdoc.commentBefore = ` the agent's credential (key "${AGENT_TOKEN_KEY}": a random token, made when applied)`;
  docs.push(sdoc);
  for (const p of [plan.workloadPatch, ...plan.servicePatches]) {
    const doc = new Document({
      apiVersion: p.apiVersion,
      kind: p.kind,
      metadata: { name: p.name, namespace: p.namespace },
      patchType: "application/json-patch+json",
      patch: p.ops,
    });
    doc.commentBefore = ` kubectl patch ${p.kind.toLowerCase()}/${p.name} -n ${p.namespace} --type json -p '<patch>'`;
    docs.push(doc);
  }
  return docs.map((d) => d.toString()).join("---\n");
}
