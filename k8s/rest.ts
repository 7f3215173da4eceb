/**
 * REST calls to the API server through @kubernetes/client-node (its generated clients work under Deno 2.9 here,
 * including custom CAs and client certificates, through its undici dispatcher), with every failure turned into a
 * K8sError that says the fix.
 */
import {
  ApiException,
  AppsV1Api,
  CoreV1Api,
  KubernetesObjectApi,
  RbacAuthorizationV1Api,
} from "@kubernetes/client-node";
import { httpError, K8sError, unreachableError } from "./errors.ts";
import { type KubeTarget, where } from "./kubeconfig.ts";

/** What a request does, in RBAC's words, for error messages: `{ verb: "list", resource: "pods", namespace: "tp" }`. */
export interface Access {
  verb: string;
  resource: string;
  namespace?: string | undefined;
}

/** Runs one client-node call; an HTTP error or a connection failure becomes a K8sError. */
export async function apiCall<T>(t: KubeTarget, what: Access, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    throw explain(e, t, what);
  }
}

/** Turns whatever a client-node call threw into a K8sError. */
export function explain(e: unknown, t: KubeTarget, what: Access): K8sError {
  if (e instanceof K8sError) return e;
  if (e instanceof ApiException) {
    const body = typeof e.body === "string" ? e.body : JSON.stringify(e.body ?? "");
    return httpError(e.code, body, where(t), what);
  }
  return unreachableError(e, where(t));
}

/** The typed API clients tp uses, for one target. */
export function clients(t: KubeTarget) {
  return {
    core: t.kc.makeApiClient(CoreV1Api),
    apps: t.kc.makeApiClient(AppsV1Api),
    rbac: t.kc.makeApiClient(RbacAuthorizationV1Api),
    objects: KubernetesObjectApi.makeApiClient(t.kc),
  };
}

/** Whether an error is the API server's 404 (for deletes of what is already gone). */
export function isNotFound(e: unknown): boolean {
  return e instanceof K8sError && e.status === 404;
}

/** Whether an error is the API server's 409 AlreadyExists. */
export function isConflict(e: unknown): boolean {
  return e instanceof K8sError && e.status === 409;
}
