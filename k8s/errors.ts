/**
 * The one error class of tp's Kubernetes side: a condition the user can fix, with a message that says how.
 * `kind` lets a caller (the connect daemon, `tp status`) tell them apart without parsing the message.
 */
export type K8sErrorKind =
  | "no-kubeconfig"
  | "unknown-context"
  | "unreachable"
  | "unauthorized"
  | "forbidden"
  | "no-manager"
  | "manager-not-ready"
  | "port-forward"
  | "agent"
  | "api";

export class K8sError extends Error {
  override name = "K8sError";
  constructor(readonly kind: K8sErrorKind, message: string, options?: { cause?: unknown; status?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.status = options?.status;
  }
  /** The HTTP status the API server answered with, when there was one. */
  readonly status: number | undefined;
}

/** A Kubernetes `Status` object, as the API server sends with every error. */
export interface K8sStatus {
  kind?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: { name?: string; kind?: string; group?: string };
}

/** Parses a response body as a `Status`, or returns undefined. */
export function parseStatus(body: string): K8sStatus | undefined {
  try {
    const v = JSON.parse(body);
    return v && typeof v === "object" && v.kind === "Status" ? v as K8sStatus : undefined;
  } catch {
    return undefined;
  }
}

/** What the API server is reached as, for messages: `context "lab" (https://10.0.0.1:6443)`. */
export interface Where {
  context: string;
  server: string;
  /** How the context's user authenticates, for 401 messages: "token", `exec plugin "aws"`, "client certificate". */
  auth?: string | undefined;
}

/**
 * Turns an HTTP error answer of the API server into a K8sError whose message says the fix.
 * `what` names the request in the words of RBAC: `{ verb: "list", resource: "pods", namespace: "tp" }`.
 */
export function httpError(
  status: number,
  body: string,
  where: Where,
  what: { verb: string; resource: string; namespace?: string | undefined },
): K8sError {
  const st = parseStatus(body);
  const detail = st?.message ?? (body.trim().slice(0, 300) || `HTTP ${status}`);
  const scope = what.namespace ? ` in namespace "${what.namespace}"` : "";
  if (status === 401) {
    return new K8sError(
      "unauthorized",
      `the API server of context "${where.context}" (${where.server}) rejected tp's credentials ` +
        `(${where.auth ?? "credentials"}; 401 Unauthorized): they are wrong or expired; ` +
        (where.auth?.startsWith("exec")
          ? `the ${where.auth} returned a credential the server does not accept: log in again with that tool`
          : `refresh them (log in again, or fix the user in the kubeconfig)`) +
        `, then try again`,
      { status },
    );
  }
  if (status === 403) {
    return new K8sError(
      "forbidden",
      `RBAC forbids tp to ${what.verb} ${what.resource}${scope} (context "${where.context}"): ${detail}. ` +
        `Ask a cluster admin for a Role granting "${what.verb}" on "${what.resource}"${scope}`,
      { status },
    );
  }
  return new K8sError("api", `${what.verb} ${what.resource}${scope} failed (HTTP ${status}): ${detail}`, { status });
}

/** Turns a failure to reach the API server at all (DNS, refused, TLS) into a K8sError that says what to check. */
export function unreachableError(e: unknown, where: Where): K8sError {
  const parts: string[] = [];
  for (let c: unknown = e, i = 0; c && i < 5; c = (c as { cause?: unknown }).cause, i++) {
    const m = c instanceof Error ? `${(c as { code?: string }).code ?? ""} ${c.message}`.trim() : String(c);
    if (m && !parts.includes(m)) parts.push(m);
  }
  const tls = parts.some((p) => /cert|tls|ssl|handshake|verify/i.test(p));
  const hint = tls
    ? "the server's TLS certificate did not verify: check certificate-authority(-data) in the kubeconfig"
    : "check that the cluster is running and this machine can reach it (VPN, firewall), or pick another --context";
  return new K8sError(
    "unreachable",
    `cannot reach the API server of context "${where.context}" at ${where.server}: ${parts.join(": ")}; ${hint}`,
    { cause: e },
  );
}
