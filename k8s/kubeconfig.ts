/**
 * kubectl's conventions for finding a cluster: `--kubeconfig`, KUBECONFIG with several files, `--context`,
 * `-n/--namespace`, plus tp's `--manager-namespace`. Parsing and the auth methods (client certificates, bearer tokens,
 * token files, exec credential plugins, auth-providers, CA data, insecure-skip-tls-verify) are
 * @kubernetes/client-node's; tp adds kubectl's merge rule for several files (the first file to set a name wins) and
 * the sudo rule: under sudo, root reads nothing of the kubeconfig and runs none of its commands. A helper run as the
 * user who ran sudo does all of it and hands root a self-contained config (k8s/as_user.ts).
 */
import { Buffer } from "node:buffer";
import { type Cluster, type Context, KubeConfig, type User } from "@kubernetes/client-node";
import type { InvokingUser, KubeTarget } from "./target.ts";
import { K8sError, type Where } from "./errors.ts";
import { errorMessage } from "../base/error_message.ts";
import { loadKubeAsUser } from "./as_user.ts";

export { DEFAULT_MANAGER_NAMESPACE, type KubeOptions } from "./options.ts";
export type { InvokingUser, KubeTarget } from "./target.ts";
import { DEFAULT_MANAGER_NAMESPACE, type KubeOptions } from "./options.ts";

/** Where this process finds things: the environment and the user it acts for. Tests pass their own. */
export interface KubeEnv {
  get(name: string): string | undefined;
  /** Effective uid of this process (0 under sudo). */
  uid(): number | null;
}

const processEnv: KubeEnv = { get: (n) => Deno.env.get(n), uid: () => Deno.uid() };

export function invokingUser(env: KubeEnv = processEnv): InvokingUser | undefined {
  const name = env.get("SUDO_USER");
  const uid = Number(env.get("SUDO_UID"));
  const gid = Number(env.get("SUDO_GID"));
  if (env.uid() !== 0 || !name || name === "root" || !Number.isInteger(uid) || !Number.isInteger(gid)) return undefined;
  let home = `/home/${name}`;
  try {
    for (const line of Deno.readTextFileSync("/etc/passwd").split("\n")) {
      const f = line.split(":");
      if (f[0] === name && f[5]) home = f[5];
    }
  } catch { /* no /etc/passwd (macOS): keep the guess */ }
  return { name, uid, gid, home };
}

/** The kubeconfig files kubectl would read, in order. */
export function kubeconfigFiles(opts: KubeOptions, env: KubeEnv = processEnv): string[] {
  if (opts.kubeconfig) return [opts.kubeconfig];
  const list = env.get("KUBECONFIG");
  if (list) return list.split(":").filter((f) => f.length > 0);
  return [`${env.get("HOME") ?? ""}/.kube/config`]; // under sudo, the helper's HOME is the user's (k8s/as_user.ts)
}

/** Whether `path` is a file; a file this user may not reach is an error, not a missing file. */
function exists(path: string, env: KubeEnv): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.PermissionDenied) throw unreadable(path, e, env);
    return false;
  }
}

/** The error for a kubeconfig this process may not read, naming the user it reads as. */
function unreadable(path: string, e: Error, env: KubeEnv): K8sError {
  const uid = env.uid();
  const as = uid === 0 || uid === null ? "" : ` as ${env.get("USER") ?? "uid"} (uid ${uid})`;
  return new K8sError(
    "no-kubeconfig",
    `cannot read kubeconfig "${path}"${as}: permission denied; tp reads the kubeconfig as the user who ran it, ` +
      `like kubectl: make it readable by that user`,
    { cause: e },
  );
}

/** Reads and merges the kubeconfig files with kubectl's rule: the first file to define a name, or a current-context, wins. */
export function readKubeconfig(files: string[], env: KubeEnv = processEnv): KubeConfig {
  const clusters = new Map<string, Cluster>();
  const users = new Map<string, User>();
  const contexts = new Map<string, Context>();
  let current = "";
  for (const file of files) {
    if (!exists(file, env)) continue; // kubectl ignores missing files in KUBECONFIG
    const one = new KubeConfig();
    try {
      one.loadFromFile(file);
    } catch (e) {
      if ((e as { code?: string }).code === "EACCES") throw unreadable(file, e as Error, env);
      throw new K8sError("no-kubeconfig", `cannot read kubeconfig "${file}": ${errorMessage(e)}`, { cause: e });
    }
    for (const c of one.getClusters()) if (!clusters.has(c.name)) clusters.set(c.name, c);
    for (const u of one.getUsers()) if (!users.has(u.name)) users.set(u.name, u);
    for (const c of one.getContexts()) if (!contexts.has(c.name)) contexts.set(c.name, c);
    if (!current && one.getCurrentContext()) current = one.getCurrentContext();
  }
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [...clusters.values()],
    users: [...users.values()],
    contexts: [...contexts.values()],
    currentContext: current,
  });
  return kc;
}

/**
 * Resolves the flags to one context of one kubeconfig, or throws a K8sError that says the fix: no kubeconfig, an
 * unknown context, a context whose cluster or user is missing. Inside a pod with no kubeconfig, the service
 * account's in-cluster config is used (what the traffic-manager runs with). Under sudo, all of it is done by a helper
 * that runs as the invoking user (k8s/as_user.ts): root reads no kubeconfig, token or key file and runs no command of
 * it.
 */
export function loadKube(opts: KubeOptions, env: KubeEnv = processEnv): KubeTarget {
  const who = invokingUser(env);
  if (who) return loadKubeAsUser(opts, who);
  return loadOwnKube(opts, env);
}

/** loadKube() in this process, as this process's user. */
function loadOwnKube(opts: KubeOptions, env: KubeEnv): KubeTarget {
  const files = kubeconfigFiles(opts, env);
  const managerNamespace = opts.managerNamespace ?? DEFAULT_MANAGER_NAMESPACE;
  const found = files.filter((f) => exists(f, env));
  if (found.length === 0) {
    if (!opts.kubeconfig && !opts.context && env.get("KUBERNETES_SERVICE_HOST")) {
      const kc = new KubeConfig();
      kc.loadFromCluster();
      const ctx = kc.getCurrentContext();
      return {
        kc,
        context: ctx,
        server: kc.getCurrentCluster()?.server ?? "",
        namespace: opts.namespace ?? kc.getContextObject(ctx)?.namespace ?? "default",
        managerNamespace,
        files: [],
        auth: describeAuth(kc.getCurrentUser()),
      };
    }
    const where = opts.kubeconfig
      ? `--kubeconfig "${opts.kubeconfig}" does not exist`
      : env.get("KUBECONFIG")
      ? `none of the files in KUBECONFIG (${files.join(", ")}) exists`
      : `there is no ${files[0]}`;
    throw new K8sError(
      "no-kubeconfig",
      `no kubeconfig: ${where}. Pass --kubeconfig <file> or set KUBECONFIG, as for kubectl`,
    );
  }
  const kc = readKubeconfig(found, env);
  const names = kc.getContexts().map((c) => c.name);
  const name = opts.context ?? kc.getCurrentContext();
  if (!name) {
    throw new K8sError(
      "unknown-context",
      `the kubeconfig (${found.join(", ")}) sets no current-context: pass --context, one of: ${
        names.join(", ") || "(none)"
      }`,
    );
  }
  const ctx = kc.getContextObject(name);
  if (!ctx) {
    throw new K8sError(
      "unknown-context",
      `context "${name}" is not in the kubeconfig (${found.join(", ")}); its contexts are: ${
        names.join(", ") || "(none)"
      }. See kubectl config get-contexts`,
    );
  }
  kc.setCurrentContext(name);
  const cluster = kc.getCluster(ctx.cluster);
  if (!cluster) {
    throw new K8sError(
      "unknown-context",
      `context "${name}" names cluster "${ctx.cluster}", which the kubeconfig lacks`,
    );
  }
  if (ctx.user && !kc.getUser(ctx.user)) {
    throw new K8sError("unknown-context", `context "${name}" names user "${ctx.user}", which the kubeconfig lacks`);
  }
  return {
    kc,
    context: name,
    server: cluster.server,
    namespace: opts.namespace ?? ctx.namespace ?? "default",
    managerNamespace,
    files: found,
    auth: describeAuth(kc.getCurrentUser()),
  };
}

/** How a kubeconfig user authenticates, in words for messages. */
export function describeAuth(u: User | null | undefined): string {
  const exec = u?.exec as { command?: string } | undefined;
  return exec
    ? `exec plugin "${exec.command}"`
    : u?.authProvider?.config?.tokenFile
    ? "bearer token file"
    : u?.authProvider
    ? `auth-provider "${(u.authProvider as { name?: string }).name}"`
    : u?.token
    ? "bearer token"
    : u?.certFile || u?.certData
    ? "client certificate"
    : u?.username
    ? "basic auth"
    : "no credentials";
}

export function where(t: KubeTarget): Where {
  return { context: t.context, server: t.server, auth: t.auth };
}

/** What a TLS connection to the API server needs: trust, client identity and the auth header. */
export interface KubeTls {
  host: string;
  port: number;
  /** The path prefix of the server URL ("" or e.g. "/k8s/clusters/c-1" behind Rancher). */
  basePath: string;
  ca?: string | Buffer | undefined;
  cert?: string | Buffer | undefined;
  key?: string | Buffer | undefined;
  rejectUnauthorized: boolean;
  servername?: string | undefined;
  headers: Record<string, string>;
}

/** What the target's user presents: the auth headers, the client certificate and key; and the CA to trust. */
export interface KubeCredentials {
  headers: Record<string, string>;
  ca?: string | Buffer | undefined;
  cert?: string | Buffer | undefined;
  key?: string | Buffer | undefined;
  servername?: string | undefined;
}

/**
 * The TLS material and headers of the target's user: client-node reads CA and certificate files and data, tokens
 * and token files, and runs exec plugins (their tokens are cached until they expire) and auth-providers' commands.
 */
export async function kubeCredentials(t: KubeTarget): Promise<KubeCredentials> {
  const o: {
    headers?: Record<string, string>;
    ca?: string | Buffer;
    cert?: string | Buffer;
    key?: string | Buffer;
    servername?: string;
    auth?: string;
  } = {};
  try {
    await t.kc.applyToHTTPSOptions(o as never);
  } catch (e) {
    if (e instanceof K8sError) throw e;
    throw new K8sError(
      "unauthorized",
      `cannot get credentials for context "${t.context}": ${errorMessage(e)}. ` +
        `Check the user's exec plugin, auth-provider or token file in the kubeconfig`,
      { cause: e },
    );
  }
  const headers: Record<string, string> = {};
  // A token file's trailing newline is no part of the token (kubectl trims it too).
  for (const [k, v] of Object.entries(o.headers ?? {})) headers[k] = String(v).trim();
  if (o.auth) headers["Authorization"] = `Basic ${Buffer.from(o.auth).toString("base64")}`;
  return { headers, ca: o.ca, cert: o.cert, key: o.key, servername: o.servername };
}

/** What a port-forward's TLS connection needs (kubeCredentials() and the server's address). */
export async function kubeTls(t: KubeTarget): Promise<KubeTls> {
  const url = new URL(t.server);
  if (url.protocol !== "https:") {
    throw new K8sError("api", `tp only speaks HTTPS to the API server; context "${t.context}" has ${t.server}`);
  }
  const c = await kubeCredentials(t);
  const cluster = t.kc.getCurrentCluster();
  return {
    host: url.hostname.replace(/^\[|\]$/g, ""),
    port: url.port ? Number(url.port) : 443,
    basePath: url.pathname.replace(/\/$/, ""),
    ca: c.ca,
    cert: c.cert,
    key: c.key,
    rejectUnauthorized: !(cluster?.skipTLSVerify ?? false),
    servername: cluster?.tlsServerName ?? c.servername,
    headers: c.headers,
  };
}
