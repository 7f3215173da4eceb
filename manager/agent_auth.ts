/**
 * Who may use the manager's agent port: a traffic-agent presents (namespace, workload, token), and `check` says
 * whether the token is that workload's. In a cluster the credential is the Secret `tp-agent-<workload>` that tp made
 * when it injected the agent (k8s/inject.ts), read through the Kubernetes API; in labs the manager's own `--token`
 * admits any agent. Tokens are compared in constant time (SHA-256 digests through timingSafeEqual, so their lengths
 * leak nothing either), and never logged.
 */
import { Buffer } from "node:buffer";
import { createHash, timingSafeEqual } from "node:crypto";
import { AGENT_TOKEN_KEY, agentSecretName } from "../k8s/inject.ts";
import type { KubeTarget } from "../k8s/kubeconfig.ts";
import { apiCall, clients, isNotFound } from "../k8s/rest.ts";

export interface AgentAuth {
  /** Whether `token` is the credential of `workload`'s agents in `namespace`. Never throws. */
  check(namespace: string, workload: string, token: string): Promise<boolean>;
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

function sameDigest(a: Buffer, b: Buffer): boolean {
  return timingSafeEqual(a, b);
}

/** Admits an agent that presents the manager's own `--token` (labs and CI, where no Kubernetes API runs). */
export function managerTokenAuth(managerToken: string): AgentAuth {
  const want = digest(managerToken);
  return { check: (_ns, _workload, token) => Promise.resolve(sameDigest(digest(token), want)) };
}

/** Admits an agent that any of `auths` admits, asked in order. */
export function anyAgentAuth(...auths: AgentAuth[]): AgentAuth {
  return {
    async check(namespace, workload, token) {
      for (const a of auths) if (await a.check(namespace, workload, token)) return true;
      return false;
    },
  };
}

/** Reads Secret `name`'s token in `namespace`: undefined when there is no such Secret or key; throws on API errors. */
export type SecretTokenReader = (namespace: string, name: string) => Promise<string | undefined>;

export interface SecretAgentAuthOptions {
  /** How long an answer (a token, or "no Secret") is kept. Default 10 s: a removed agent's credential lapses soon. */
  ttlMs?: number;
  /** Most (namespace, workload) answers kept; the least recently used goes first. Default 1024. */
  maxEntries?: number;
  /** Most Secret reads in flight; a check beyond it is refused, so a flood of names cannot flood the API. Default 32. */
  maxLookups?: number;
  /** The clock (tests inject one). */
  now?: () => number;
  /** A read that failed (RBAC, API unreachable): the check is refused and not cached. */
  onError?: (e: unknown, namespace: string, secret: string) => void;
}

// Kubernetes' name rules (k8s.io/apimachinery/pkg/util/validation): a namespace is a DNS-1123 label, a workload
// name a DNS-1123 subdomain; anything else names no Secret, and is refused before any API call.
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function validNames(namespace: string, workload: string): boolean {
  return namespace.length <= 63 && DNS1123_LABEL.test(namespace) &&
    agentSecretName(workload).length <= 253 && DNS1123_SUBDOMAIN.test(workload);
}

interface Entry {
  /** SHA-256 of the Secret's token; undefined when there is no Secret (or no token in it). */
  token: Buffer | undefined;
  expires: number;
}

/**
 * Admits an agent whose token equals the one in Secret `tp-agent-<workload>` of its namespace. Answers are cached for
 * `ttlMs` in a bounded cache; concurrent checks of one workload share one read.
 */
export function secretAgentAuth(read: SecretTokenReader, opts: SecretAgentAuthOptions = {}): AgentAuth {
  const ttlMs = opts.ttlMs ?? 10_000;
  const maxEntries = opts.maxEntries ?? 1024;
  const maxLookups = opts.maxLookups ?? 32;
  const now = opts.now ?? (() => performance.now());
  const cache = new Map<string, Entry>();
  const inFlight = new Map<string, Promise<Entry | undefined>>();

  const lookup = (namespace: string, workload: string, key: string): Promise<Entry | undefined> => {
    const pending = inFlight.get(key);
    if (pending) return pending;
    if (inFlight.size >= maxLookups) return Promise.resolve(undefined);
    const secret = agentSecretName(workload);
    const p = read(namespace, secret).then(
      (token) => {
        const entry = { token: token === undefined ? undefined : digest(token), expires: now() + ttlMs };
        cache.delete(key);
        cache.set(key, entry);
        while (cache.size > maxEntries) cache.delete(cache.keys().next().value!);
        return entry;
      },
      (e) => {
        opts.onError?.(e, namespace, secret);
        return undefined;
      },
    ).finally(() => inFlight.delete(key));
    inFlight.set(key, p);
    return p;
  };

  return {
    async check(namespace, workload, token) {
      if (!validNames(namespace, workload)) return false;
      const key = `${namespace}/${workload}`;
      let entry = cache.get(key);
      if (entry && entry.expires <= now()) {
        cache.delete(key);
        entry = undefined;
      }
      if (entry) {
        cache.delete(key); // most recently used goes last
        cache.set(key, entry);
      } else {
        entry = await lookup(namespace, workload, key);
      }
      return entry?.token !== undefined && sameDigest(digest(token), entry.token);
    },
  };
}

/** Reads a Secret's token through the Kubernetes API, as the manager's service account (RBAC: get secrets). */
export function kubeSecretTokenReader(target: KubeTarget): SecretTokenReader {
  const core = clients(target).core;
  return async (namespace, name) => {
    try {
      const s = await apiCall(
        target,
        { verb: "get", resource: "secrets", namespace },
        () => core.readNamespacedSecret({ name, namespace }),
      );
      const b64 = s.data?.[AGENT_TOKEN_KEY];
      return b64 === undefined ? undefined : Buffer.from(b64, "base64").toString("utf8");
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  };
}
