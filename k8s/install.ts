/**
 * Creating and deleting the traffic-manager's objects (k8s/manifests.ts) through the API server: what
 * `tp install` and `tp uninstall` do, without the command-line parts.
 */
import type { KubernetesObject } from "@kubernetes/client-node";
import { K8sError } from "./errors.ts";
import type { KubeTarget } from "./kubeconfig.ts";
import { commonLabels, type K8sObject, managerManifests, objectRef } from "./manifests.ts";
import { findManagerPod } from "./portforward.ts";
import { apiCall, clients, isConflict, isNotFound } from "./rest.ts";

export type Action = "created" | "exists" | "deleted" | "absent" | "kept";

export interface ObjectResult {
  kind: string;
  name: string;
  namespace?: string;
  action: Action;
}

function resourceOf(o: K8sObject): string {
  const plural = o.kind.toLowerCase() + (o.kind.endsWith("s") ? "es" : "s");
  const group = o.apiVersion.includes("/") ? `.${o.apiVersion.split("/")[0]}` : "";
  return plural + group;
}

function result(o: K8sObject, action: Action): ObjectResult {
  return {
    kind: o.kind,
    name: o.metadata.name,
    ...(o.metadata.namespace ? { namespace: o.metadata.namespace } : {}),
    action,
  };
}

/** Creates each object that does not exist yet, in order; an existing one is left as it is ("exists"). */
export async function applyObjects(
  t: KubeTarget,
  objects: K8sObject[],
  onResult: (r: ObjectResult) => void = () => {},
): Promise<ObjectResult[]> {
  const api = clients(t).objects;
  const out: ObjectResult[] = [];
  for (const o of objects) {
    const what = { verb: "create", resource: resourceOf(o), namespace: o.metadata.namespace };
    let r: ObjectResult;
    try {
      await apiCall(t, what, () => api.create(o as KubernetesObject));
      r = result(o, "created");
    } catch (e) {
      if (!isConflict(e)) throw e;
      r = result(o, "exists");
    }
    out.push(r);
    onResult(r);
  }
  return out;
}

/**
 * Deletes the objects in reverse order; a missing one is "absent". The namespace is deleted only if tp made it
 * (it carries tp's managed-by label), so `--manager-namespace kube-system` never deletes kube-system.
 */
export async function deleteObjects(
  t: KubeTarget,
  objects: K8sObject[],
  onResult: (r: ObjectResult) => void = () => {},
): Promise<ObjectResult[]> {
  const api = clients(t).objects;
  const out: ObjectResult[] = [];
  for (const o of [...objects].reverse()) {
    let r: ObjectResult;
    try {
      if (o.kind === "Namespace") {
        const live = await apiCall(
          t,
          { verb: "get", resource: "namespaces" },
          () => api.read({ apiVersion: "v1", kind: "Namespace", metadata: { name: o.metadata.name } }),
        );
        const managedBy = live.metadata?.labels?.["app.kubernetes.io/managed-by"];
        if (managedBy !== commonLabels()["app.kubernetes.io/managed-by"]) {
          r = result(o, "kept");
          out.push(r);
          onResult(r);
          continue;
        }
      }
      await apiCall(
        t,
        { verb: "delete", resource: resourceOf(o), namespace: o.metadata.namespace },
        () => api.delete(o as KubernetesObject),
      );
      r = result(o, "deleted");
    } catch (e) {
      if (!isNotFound(e)) throw e;
      r = result(o, "absent");
    }
    out.push(r);
    onResult(r);
  }
  return out;
}

/** Waits, bounded, until a traffic-manager pod is ready; rethrows the last "not ready" error at the deadline. */
export async function waitForManager(
  t: KubeTarget,
  o: { timeoutMs: number; intervalMs?: number; signal?: AbortSignal; onProgress?: (m: string) => void },
): Promise<string> {
  const deadline = Date.now() + o.timeoutMs;
  let last: unknown;
  for (let i = 0; i < 10_000; i++) {
    o.signal?.throwIfAborted();
    try {
      return (await findManagerPod(t)).metadata!.name!;
    } catch (e) {
      if (!(e instanceof K8sError) || (e.kind !== "manager-not-ready" && e.kind !== "no-manager")) throw e;
      if (e.message !== (last as K8sError | undefined)?.message) o.onProgress?.(e.message);
      last = e;
    }
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 1000));
  }
  throw last;
}

export { managerManifests, objectRef };
