/**
 * What a resolved kubeconfig is, as types of their own: `kubeconfig.ts` builds them, `as_user.ts` builds them for root
 * from the invoking user's helper, and `kubeconfig.ts` calls `as_user.ts`, so the types live apart from both (no
 * import cycle).
 */
import type { KubeConfig } from "@kubernetes/client-node";

/** Where a kubeconfig's context points and how it authenticates, in words: what messages and status show. */
export interface KubeTargetInfo {
  context: string;
  server: string;
  namespace: string;
  managerNamespace: string;
  /** The files read, in order ([] for in-cluster config). */
  files: string[];
  /** How the context's user authenticates, for messages: "bearer token", `exec plugin "aws"`, ... */
  auth: string;
}

/** A kubeconfig resolved to one context: what the REST and port-forward clients need. */
export interface KubeTarget extends KubeTargetInfo {
  /** client-node's config with `currentContext` set to `context`. */
  kc: KubeConfig;
}

/** The user who ran `sudo tp ...`, when this process is root through sudo; their kubeconfig is the one to read. */
export interface InvokingUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
}
