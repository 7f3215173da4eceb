/**
 * A kubeconfig resolved to what one connection to the API server needs, self-contained: no file to read, no command
 * to run. The helper that runs as the user who ran tp (`tp _kube-as-user`, k8s/resolve.ts) writes it as JSON on a
 * pipe; root (k8s/as_user.ts) checks it here before it uses any of it.
 */
import { K8sError, type K8sErrorKind } from "./errors.ts";
import type { KubeTargetInfo } from "./target.ts";

/** The cluster of the context: its CA's bytes, never a file name. */
export interface ResolvedCluster {
  /** The CA certificate(s), base64 of PEM, as in `certificate-authority-data`. */
  caData?: string | undefined;
  skipTLSVerify: boolean;
  tlsServerName?: string | undefined;
  proxyUrl?: string | undefined;
}

/** What the user presents, already fetched: headers (Authorization, Impersonate-User), client certificate and key. */
export interface ResolvedCredential {
  headers: Record<string, string>;
  /** The client certificate, base64 of PEM. */
  certData?: string | undefined;
  /** Its key, base64 of PEM. */
  keyData?: string | undefined;
  /** When the credential stops being good (ISO 8601); absent when nothing says it expires. */
  expires?: string | undefined;
}

/** The helper's answer: the context's target in words, its cluster and its credential, nothing that names a file. */
export interface ResolvedKube extends KubeTargetInfo {
  cluster: ResolvedCluster;
  credential: ResolvedCredential;
}

/** What the helper writes: the resolved config, or the K8sError it met. */
export type HelperReply = { ok: ResolvedKube } | { error: { kind: K8sErrorKind; message: string } };

/** The most root takes from the helper. A kubeconfig with its certificates is a few kB. */
export const MAX_REPLY_BYTES = 1 << 20;

const KINDS: readonly K8sErrorKind[] = [
  "no-kubeconfig",
  "unknown-context",
  "unreachable",
  "unauthorized",
  "forbidden",
  "no-manager",
  "manager-not-ready",
  "port-forward",
  "agent",
  "api",
];

/**
 * Parses the helper's reply: the resolved config, or the helper's K8sError thrown here. Anything else (not JSON, a
 * field of the wrong type, too long) is a SyntaxError naming what is wrong.
 */
export function parseHelperReply(text: string): ResolvedKube {
  if (text.length > MAX_REPLY_BYTES) throw new SyntaxError(`the reply is longer than ${MAX_REPLY_BYTES} bytes`);
  const v = JSON.parse(text) as unknown;
  if (!isObject(v)) throw new SyntaxError("the reply is not an object");
  if (isObject(v.error)) {
    const kind = KINDS.find((k) => k === (v.error as { kind?: unknown }).kind) ?? "no-kubeconfig";
    throw new K8sError(kind, str(v.error, "message"));
  }
  const r = v.ok;
  if (!isObject(r) || !isObject(r.cluster) || !isObject(r.credential)) {
    throw new SyntaxError("the reply has no ok.cluster and ok.credential");
  }
  const files = r.files;
  if (!Array.isArray(files) || !files.every((f) => typeof f === "string")) {
    throw new SyntaxError("ok.files is not a list of strings");
  }
  const url = new URL(str(r, "server"));
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new SyntaxError(`ok.server is ${url.href}`);
  return {
    context: str(r, "context"),
    server: str(r, "server"),
    namespace: str(r, "namespace"),
    managerNamespace: str(r, "managerNamespace"),
    files,
    auth: str(r, "auth"),
    cluster: {
      caData: optStr(r.cluster, "caData"),
      skipTLSVerify: r.cluster.skipTLSVerify === true,
      tlsServerName: optStr(r.cluster, "tlsServerName"),
      proxyUrl: optStr(r.cluster, "proxyUrl"),
    },
    credential: parseCredential(r.credential),
  };
}

function parseCredential(c: Record<string, unknown>): ResolvedCredential {
  const headers: Record<string, string> = {};
  if (!isObject(c.headers)) throw new SyntaxError("ok.credential.headers is not an object");
  for (const [k, v] of Object.entries(c.headers)) {
    // A header name is a token, its value one line (RFC 9110 section 5): nothing that could add a header or a line.
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k) || typeof v !== "string" || /[\r\n\0]/.test(v)) {
      throw new SyntaxError(`ok.credential.headers has a bad header "${k.slice(0, 40)}"`);
    }
    headers[k] = v;
  }
  const expires = optStr(c, "expires");
  if (expires !== undefined && Number.isNaN(Date.parse(expires))) {
    throw new SyntaxError(`ok.credential.expires is not a date: "${expires.slice(0, 40)}"`);
  }
  return { headers, certData: optStr(c, "certData"), keyData: optStr(c, "keyData"), expires };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(o: Record<string, unknown>, k: string): string {
  const v = o[k];
  if (typeof v !== "string") throw new SyntaxError(`${k} is not a string`);
  return v;
}

function optStr(o: Record<string, unknown>, k: string): string | undefined {
  return o[k] === undefined || o[k] === null ? undefined : str(o, k);
}
