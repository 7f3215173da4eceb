/**
 * Putting the traffic-agent in a workload and taking it out through the API server, as the invoking user (like
 * kubectl): the plans of k8s/inject.ts, sent as JSON patches. Every patch is guarded by a `test` of the
 * resourceVersion tp read, so a concurrent change makes it fail instead of being overwritten; tp then reads again and
 * plans again, a bounded number of times.
 *
 * The order keeps traffic flowing: on injection the Secret first (the agent's env needs it), then the workload (its
 * pods restart with the agent), then the Services (re-pointed to the agent's ports); on removal the reverse.
 */
import { randomBytes } from "node:crypto";
import {
  PatchStrategy,
  setHeaderOptions,
  type V1Deployment,
  type V1ReplicaSet,
  type V1Secret,
  type V1Service,
  type V1StatefulSet,
} from "@kubernetes/client-node";
import { DEFAULT_AGENT_PORT, DEFAULT_IMAGE } from "./defaults.ts";
import { K8sError } from "./errors.ts";
import {
  AGENT_SECRET_COMPONENT,
  agentManagerUrl,
  agentRecord,
  agentSecret,
  agentSecretName,
  type ForwardPair,
  hasAgent,
  type InjectionPlan,
  type ObjectPatch,
  planInjection,
  planRemoval,
  planServiceRepair,
  planServiceRestore,
  serviceRecord,
  WORKLOAD_KINDS,
  type WorkloadKind,
  workloadRef,
} from "./inject.ts";
import type { JsonPatchOp } from "./json_patch.ts";
import type { KubeTarget } from "./kubeconfig.ts";
import { commonLabels } from "./manifests.ts";
import { apiCall, clients, isConflict, isNotFound } from "./rest.ts";

/** Attempts at read-plan-patch when the objects change under tp (409, or a failed `test`: 422). */
const ATTEMPTS = 3;
/** The manager's Deployment, whose image the agent runs unless told otherwise. */
const MANAGER_DEPLOYMENT = "tp-manager";

type AppsObject = V1Deployment | V1StatefulSet | V1ReplicaSet;

/** A workload as read from the API server, with its kind. */
export interface FoundWorkload {
  kind: WorkloadKind;
  object: AppsObject;
}

export interface AgentOptions {
  /** The agent's image; default the manager Deployment's image (the same executable), else DEFAULT_IMAGE. */
  image?: string | undefined;
  /** The app container; default the one the workload's Services target, else the first. */
  container?: string | undefined;
  /** The manager's agent port (default 8082). */
  agentPort?: number | undefined;
  /** Progress lines for the user ("patching deployment/echo: adds container tp-agent"). */
  onProgress?: ((message: string) => void) | undefined;
}

export interface AgentInjectResult {
  kind: WorkloadKind;
  name: string;
  namespace: string;
  /** "injected" by this call; "present" when the workload already had the agent (left as it is). */
  action: "injected" | "present";
  appContainer: string;
  forward: ForwardPair[];
  /** The Services that route to the agent. */
  services: string[];
}

export interface AgentRemoveResult {
  kind: WorkloadKind;
  name: string;
  namespace: string;
  /** "removed" when tp took something out; "absent" when the workload had nothing of tp's. */
  action: "removed" | "absent";
  /** The Services whose target ports were put back. */
  services: string[];
}

function parseRef(ref: string): { kind?: WorkloadKind; name: string } {
  const slash = ref.indexOf("/");
  if (slash < 0) return { name: ref };
  const word = ref.slice(0, slash).toLowerCase().replace(/\.apps$/, "");
  const kind = WORKLOAD_KINDS.find((k) =>
    [k.toLowerCase(), `${k.toLowerCase()}s`, { Deployment: "deploy", StatefulSet: "sts", ReplicaSet: "rs" }[k]]
      .includes(word)
  );
  if (!kind) {
    throw new K8sError("agent", `tp intercepts deployments, statefulsets and replicasets, not "${ref}"`);
  }
  return { kind, name: ref.slice(slash + 1) };
}

function resourceOf(kind: WorkloadKind): string {
  return `${kind.toLowerCase()}s.apps`;
}

async function readWorkload(t: KubeTarget, namespace: string, kind: WorkloadKind, name: string): Promise<AppsObject> {
  const apps = clients(t).apps;
  const what = { verb: "get", resource: resourceOf(kind), namespace };
  const args = { name, namespace };
  switch (kind) {
    case "Deployment":
      return await apiCall(t, what, () => apps.readNamespacedDeployment(args));
    case "StatefulSet":
      return await apiCall(t, what, () => apps.readNamespacedStatefulSet(args));
    case "ReplicaSet":
      return await apiCall(t, what, () => apps.readNamespacedReplicaSet(args));
  }
}

/**
 * Finds a workload by `NAME` (a Deployment, else a StatefulSet, else a ReplicaSet of that name) or `KIND/NAME`
 * (`deployment/echo`, `sts/db`). Throws K8sError("agent") naming what was looked for when there is none.
 */
export async function findWorkload(t: KubeTarget, namespace: string, ref: string): Promise<FoundWorkload> {
  const { kind, name } = parseRef(ref);
  for (const k of kind ? [kind] : WORKLOAD_KINDS) {
    try {
      return { kind: k, object: await readWorkload(t, namespace, k, name) };
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }
  const looked = kind ? workloadRef(kind, name) : `deployment, statefulset or replicaset named "${name}"`;
  throw new K8sError("agent", `no ${looked} in namespace "${namespace}" (context "${t.context}")`);
}

async function listServices(t: KubeTarget, namespace: string): Promise<V1Service[]> {
  const core = clients(t).core;
  const list = await apiCall(
    t,
    { verb: "list", resource: "services", namespace },
    () => core.listNamespacedService({ namespace }),
  );
  return list.items;
}

/** The image of the manager `tp install` deployed, or DEFAULT_IMAGE when it cannot be read (RBAC, not installed). */
async function managerImage(t: KubeTarget, onProgress?: (m: string) => void): Promise<string> {
  try {
    const dep = await apiCall(
      t,
      { verb: "get", resource: "deployments.apps", namespace: t.managerNamespace },
      () => clients(t).apps.readNamespacedDeployment({ name: MANAGER_DEPLOYMENT, namespace: t.managerNamespace }),
    );
    const image = dep.spec?.template.spec?.containers.find((c) => c.name === "manager")?.image;
    if (image) return image;
  } catch (e) {
    if (!(e instanceof K8sError)) throw e;
    onProgress?.(`cannot read the manager's image (${e.message}); the agent runs ${DEFAULT_IMAGE}`);
  }
  return DEFAULT_IMAGE;
}

/** A patch that applies only to the version of the object tp read. */
function guarded(patch: ObjectPatch, resourceVersion: string | undefined): JsonPatchOp[] {
  return resourceVersion === undefined
    ? patch.ops
    : [{ op: "test", path: "/metadata/resourceVersion", value: resourceVersion }, ...patch.ops];
}

const JSON_PATCH = setHeaderOptions("Content-Type", PatchStrategy.JsonPatch);

async function patchWorkload(t: KubeTarget, p: ObjectPatch, rv: string | undefined): Promise<void> {
  const apps = clients(t).apps;
  const args = { name: p.name, namespace: p.namespace, body: guarded(p, rv) };
  const what = { verb: "patch", resource: resourceOf(p.kind as WorkloadKind), namespace: p.namespace };
  switch (p.kind as WorkloadKind) {
    case "Deployment":
      await apiCall(t, what, () => apps.patchNamespacedDeployment(args, JSON_PATCH));
      return;
    case "StatefulSet":
      await apiCall(t, what, () => apps.patchNamespacedStatefulSet(args, JSON_PATCH));
      return;
    case "ReplicaSet":
      await apiCall(t, what, () => apps.patchNamespacedReplicaSet(args, JSON_PATCH));
      return;
  }
}

async function patchService(t: KubeTarget, p: ObjectPatch, rv: string | undefined): Promise<void> {
  const core = clients(t).core;
  await apiCall(
    t,
    { verb: "patch", resource: "services", namespace: p.namespace },
    () => core.patchNamespacedService({ name: p.name, namespace: p.namespace, body: guarded(p, rv) }, JSON_PATCH),
  );
}

function rvOf(name: string, services: V1Service[]): string | undefined {
  return services.find((s) => s.metadata?.name === name)?.metadata?.resourceVersion;
}

/** Whether an API error means "the object changed since tp read it": 409, or a failed JSON patch `test` (422). */
function changedUnderUs(e: unknown): boolean {
  return isConflict(e) || (e instanceof K8sError && e.status === 422 && /test/i.test(e.message));
}

/** Creates the agent's Secret; one already there that tp made is kept (pods may hold its token). */
async function ensureSecret(t: KubeTarget, secret: V1Secret, onProgress?: (m: string) => void): Promise<void> {
  const core = clients(t).core;
  const namespace = secret.metadata!.namespace!;
  const name = secret.metadata!.name!;
  try {
    await apiCall(
      t,
      { verb: "create", resource: "secrets", namespace },
      () => core.createNamespacedSecret({ namespace, body: secret }),
    );
    onProgress?.(`created secret/${name} (the agent's credential)`);
  } catch (e) {
    if (!isConflict(e)) throw e;
    const live = await apiCall(
      t,
      { verb: "get", resource: "secrets", namespace },
      () => core.readNamespacedSecret({ name, namespace }),
    );
    if (live.metadata?.labels?.["app.kubernetes.io/managed-by"] !== commonLabels()["app.kubernetes.io/managed-by"]) {
      throw new K8sError(
        "agent",
        `secret/${name} in namespace "${namespace}" exists and is not tp's: tp keeps the agent's credential there; ` +
          `rename or delete that secret`,
      );
    }
  }
}

function newToken(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * The injection plan for a workload as it is now, for `tp intercept --dry-run` (the token in it is a placeholder:
 * print it with injectionYaml, which leaves it out). Throws K8sError("agent") when the workload has the agent.
 */
export async function planAgent(
  t: KubeTarget,
  namespace: string,
  workload: string,
  opts: AgentOptions = {},
): Promise<InjectionPlan> {
  const found = await findWorkload(t, namespace, workload);
  return planInjection({
    kind: found.kind,
    workload: found.object,
    services: await listServices(t, namespace),
    image: opts.image ?? await managerImage(t, opts.onProgress),
    managerUrl: agentManagerUrl(t.managerNamespace, opts.agentPort ?? DEFAULT_AGENT_PORT),
    token: "",
    container: opts.container,
  });
}

/**
 * Puts the traffic-agent in a workload's pods: creates its Secret, adds the container to the pod template, re-points
 * the Services. Idempotent: a workload that has the agent is left as it is ("present"; a Service that selects it
 * but does not route to the agent yet is re-pointed, and a missing Secret made again).
 */
export async function injectAgent(
  t: KubeTarget,
  namespace: string,
  workload: string,
  opts: AgentOptions = {},
): Promise<AgentInjectResult> {
  const progress = opts.onProgress;
  let image = opts.image;
  for (let attempt = 1;; attempt++) {
    const { kind, object } = await findWorkload(t, namespace, workload);
    const name = object.metadata!.name!;
    const services = await listServices(t, namespace);
    try {
      if (hasAgent(object)) return await keepAgent(t, kind, object, services, progress);
      image ??= await managerImage(t, progress);
      const plan = planInjection({
        kind,
        workload: object,
        services,
        image,
        managerUrl: agentManagerUrl(t.managerNamespace, opts.agentPort ?? DEFAULT_AGENT_PORT),
        token: newToken(),
        container: opts.container,
      });
      await ensureSecret(t, plan.secret, progress);
      await patchWorkload(t, plan.workloadPatch, object.metadata?.resourceVersion);
      progress?.(`patched ${workloadRef(kind, name)}: added container tp-agent beside "${plan.appContainer}"`);
      for (const p of plan.servicePatches) {
        await patchService(t, p, rvOf(p.name, services));
        progress?.(`patched service/${p.name}: its ports now reach the agent (${describe(plan.forward)})`);
      }
      return {
        kind,
        name,
        namespace,
        action: "injected",
        appContainer: plan.appContainer,
        forward: plan.forward,
        services: plan.servicePatches.map((p) => p.name),
      };
    } catch (e) {
      if (!changedUnderUs(e) || attempt >= ATTEMPTS) throw e;
      progress?.(`${workloadRef(kind, name)} or its services changed while tp patched them; reading them again`);
    }
  }
}

function describe(forward: ForwardPair[]): string {
  return forward.map((f) => `${f.agentPort} -> ${f.appPort}`).join(", ");
}

/** The "present" path of injectAgent: makes sure the Secret exists and every selecting Service is re-pointed. */
async function keepAgent(
  t: KubeTarget,
  kind: WorkloadKind,
  object: AppsObject,
  services: V1Service[],
  progress?: (m: string) => void,
): Promise<AgentInjectResult> {
  const name = object.metadata!.name!;
  const namespace = object.metadata!.namespace!;
  const rec = agentRecord(object);
  const core = clients(t).core;
  const secret = agentSecretName(name);
  try {
    await apiCall(
      t,
      { verb: "get", resource: "secrets", namespace },
      () => core.readNamespacedSecret({ name: secret, namespace }),
    );
  } catch (e) {
    if (!isNotFound(e)) throw e;
    await ensureSecret(t, agentSecret(name, namespace, newToken(), { kind, uid: object.metadata?.uid }), progress);
  }
  const repairs = planServiceRepair(kind, object, services);
  for (const p of repairs) {
    await patchService(t, p, rvOf(p.name, services));
    progress?.(`patched service/${p.name}: its ports now reach the agent`);
  }
  const ref = workloadRef(kind, name);
  return {
    kind,
    name,
    namespace,
    action: "present",
    appContainer: rec?.appContainer ?? "",
    forward: rec?.forward ?? [],
    services: [
      ...new Set([
        ...services.filter((s) => serviceRecord(s)?.workload === ref).map((s) => s.metadata!.name!),
        ...repairs.map((p) => p.name),
      ]),
    ],
  };
}

async function deleteSecret(t: KubeTarget, namespace: string, name: string): Promise<boolean> {
  const core = clients(t).core;
  try {
    await apiCall(
      t,
      { verb: "delete", resource: "secrets", namespace },
      () => core.deleteNamespacedSecret({ name, namespace }),
    );
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

/**
 * Takes the agent out of a workload and puts back what injection changed: the Services' target ports first (traffic
 * goes to the app again), then the pod template and the workload's annotation, then the Secret.
 */
export async function removeAgent(
  t: KubeTarget,
  namespace: string,
  workload: string,
  opts: Pick<AgentOptions, "onProgress"> = {},
): Promise<AgentRemoveResult> {
  const progress = opts.onProgress;
  for (let attempt = 1;; attempt++) {
    const { kind, object } = await findWorkload(t, namespace, workload);
    const name = object.metadata!.name!;
    const services = await listServices(t, namespace);
    try {
      const plan = planRemoval(kind, object, services);
      for (const p of plan.servicePatches) {
        await patchService(t, p, rvOf(p.name, services));
        progress?.(`restored service/${p.name}`);
      }
      if (plan.workloadPatch) {
        await patchWorkload(t, plan.workloadPatch, object.metadata?.resourceVersion);
        progress?.(`restored ${workloadRef(kind, name)}: removed container tp-agent`);
      }
      const deleted = await deleteSecret(t, namespace, plan.secret);
      if (deleted) progress?.(`deleted secret/${plan.secret}`);
      const changed = plan.workloadPatch !== undefined || plan.servicePatches.length > 0 || deleted;
      return {
        kind,
        name,
        namespace,
        action: changed ? "removed" : "absent",
        services: plan.servicePatches.map((p) => p.name),
      };
    } catch (e) {
      if (!changedUnderUs(e) || attempt >= ATTEMPTS) throw e;
      progress?.(`${workloadRef(kind, name)} or its services changed while tp restored them; reading them again`);
    }
  }
}

/**
 * `tp uninstall --all-agents`: removeAgent for every workload in the namespace that has the agent, then whatever tp
 * left without a workload (a Service still re-pointed, an agent Secret) is put back or deleted.
 */
export async function removeAllAgents(
  t: KubeTarget,
  namespace: string,
  opts: Pick<AgentOptions, "onProgress"> = {},
): Promise<AgentRemoveResult[]> {
  const apps = clients(t).apps;
  const what = (resource: string) => ({ verb: "list", resource, namespace });
  const lists: [WorkloadKind, AppsObject[]][] = [
    [
      "Deployment",
      (await apiCall(t, what("deployments.apps"), () => apps.listNamespacedDeployment({ namespace }))).items,
    ],
    [
      "StatefulSet",
      (await apiCall(t, what("statefulsets.apps"), () => apps.listNamespacedStatefulSet({ namespace }))).items,
    ],
    [
      "ReplicaSet",
      (await apiCall(t, what("replicasets.apps"), () => apps.listNamespacedReplicaSet({ namespace }))).items,
    ],
  ];
  const out: AgentRemoveResult[] = [];
  for (const [kind, items] of lists) {
    for (const o of items) {
      if (hasAgent(o)) out.push(await removeAgent(t, namespace, workloadRef(kind, o.metadata!.name!), opts));
    }
  }
  // Leftovers: a Service whose workload is gone, a Secret without its workload.
  for (const svc of await listServices(t, namespace)) {
    const p = planServiceRestore(svc);
    if (!p) continue;
    await patchService(t, p, svc.metadata?.resourceVersion);
    opts.onProgress?.(`restored service/${p.name} (its workload had gone)`);
  }
  const core = clients(t).core;
  const selector = Object.entries({ ...commonLabels(), "app.kubernetes.io/component": AGENT_SECRET_COMPONENT })
    .map(([k, v]) => `${k}=${v}`).join(",");
  const secrets = await apiCall(
    t,
    { verb: "list", resource: "secrets", namespace },
    () => core.listNamespacedSecret({ namespace, labelSelector: selector }),
  );
  for (const s of secrets.items) {
    if (await deleteSecret(t, namespace, s.metadata!.name!)) opts.onProgress?.(`deleted secret/${s.metadata!.name}`);
  }
  return out;
}
