/**
 * kubectl's conventions for finding a cluster: `--kubeconfig`, KUBECONFIG with several files, `--context`,
 * `-n/--namespace`, plus tp's `--manager-namespace`. Parsing and the auth methods (client certificates, bearer tokens,
 * token files, exec credential plugins, CA data, insecure-skip-tls-verify) are @kubernetes/client-node's; tp adds
 * kubectl's merge rule for several files (the first file to set a name wins) and the sudo rule: the kubeconfig is the
 * invoking user's, and exec plugins run as that user, never as root.
 */
import { Buffer } from "node:buffer";
import { type Cluster, type Context, KubeConfig, type User } from "@kubernetes/client-node";
import { K8sError, type Where } from "./errors.ts";
import { errorMessage } from "../base/error_message.ts";

export { DEFAULT_MANAGER_NAMESPACE, type KubeOptions } from "./options.ts";
import { DEFAULT_MANAGER_NAMESPACE, type KubeOptions } from "./options.ts";

/** Where this process finds things: the environment and the user it acts for. Tests pass their own. */
export interface KubeEnv {
  get(name: string): string | undefined;
  /** Effective uid of this process (0 under sudo). */
  uid(): number | null;
}

const processEnv: KubeEnv = { get: (n) => Deno.env.get(n), uid: () => Deno.uid() };

/** A kubeconfig resolved to one context: what the REST and port-forward clients need. */
export interface KubeTarget {
  /** client-node's config with `currentContext` set to `context`. */
  kc: KubeConfig;
  context: string;
  server: string;
  namespace: string;
  managerNamespace: string;
  /** The files read, in order ([] for in-cluster config). */
  files: string[];
}

/** The user who ran `sudo tp ...`, when this process is root through sudo; their kubeconfig is the one to read. */
export interface InvokingUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

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
  const home = invokingUser(env)?.home ?? env.get("HOME") ?? "";
  return [`${home}/.kube/config`];
}

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Reads and merges the kubeconfig files with kubectl's rule: the first file to define a name, or a current-context, wins. */
export function readKubeconfig(files: string[]): KubeConfig {
  const clusters = new Map<string, Cluster>();
  const users = new Map<string, User>();
  const contexts = new Map<string, Context>();
  let current = "";
  for (const file of files) {
    if (!exists(file)) continue; // kubectl ignores missing files in KUBECONFIG
    const one = new KubeConfig();
    try {
      one.loadFromFile(file);
    } catch (e) {
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
 * account's in-cluster config is used (what the traffic-manager runs with).
 */
export function loadKube(opts: KubeOptions, env: KubeEnv = processEnv): KubeTarget {
  const files = kubeconfigFiles(opts, env);
  const managerNamespace = opts.managerNamespace ?? DEFAULT_MANAGER_NAMESPACE;
  const found = files.filter(exists);
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
      };
    }
    const where = opts.kubeconfig
      ? `--kubeconfig "${opts.kubeconfig}" does not exist`
      : env.get("KUBECONFIG")
      ? `none of the files in KUBECONFIG (${files.join(", ")}) exists`
      : `there is no ${files[0]}${
        invokingUser(env) ? ` (the kubeconfig of ${invokingUser(env)!.name}, who ran sudo)` : ""
      }`;
    throw new K8sError(
      "no-kubeconfig",
      `no kubeconfig: ${where}. Pass --kubeconfig <file> or set KUBECONFIG, as for kubectl`,
    );
  }
  const kc = readKubeconfig(found);
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
  runExecPluginsAs(kc, invokingUser(env));
  return {
    kc,
    context: name,
    server: cluster.server,
    namespace: opts.namespace ?? ctx.namespace ?? "default",
    managerNamespace,
    files: found,
  };
}

/**
 * Under sudo, rewrites every exec credential plugin to run as the invoking user (through util-linux's setpriv), so
 * the plugin sees that user's cloud credentials and caches, not root's.
 */
function runExecPluginsAs(kc: KubeConfig, who: InvokingUser | undefined): void {
  if (!who) return;
  for (const u of kc.getUsers()) {
    const exec = u.exec as { command?: string; args?: string[]; env?: { name: string; value: string }[] } | undefined;
    if (!exec?.command) continue;
    exec.args = [
      `--reuid=${who.uid}`,
      `--regid=${who.gid}`,
      "--init-groups",
      "--",
      exec.command,
      ...(exec.args ?? []),
    ];
    exec.command = "setpriv";
    exec.env = [{ name: "HOME", value: who.home }, { name: "USER", value: who.name }, ...(exec.env ?? [])];
  }
}

export function where(t: KubeTarget): Where {
  const u = t.kc.getCurrentUser();
  const exec = u?.exec as { command?: string; args?: string[] } | undefined;
  const command = exec?.command === "setpriv" ? exec.args?.[exec.args.indexOf("--") + 1] : exec?.command;
  const auth = exec
    ? `exec plugin "${command}"`
    : u?.token || u?.authProvider
    ? "bearer token"
    : u?.certFile || u?.certData
    ? "client certificate"
    : u?.username
    ? "basic auth"
    : "no credentials";
  return { context: t.context, server: t.server, auth };
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

/**
 * The TLS material and headers of the target's user: client-node reads CA and certificate files and data, tokens
 * and token files, and runs exec plugins (their tokens are cached until they expire).
 */
export async function kubeTls(t: KubeTarget): Promise<KubeTls> {
  const url = new URL(t.server);
  if (url.protocol !== "https:") {
    throw new K8sError("api", `tp only speaks HTTPS to the API server; context "${t.context}" has ${t.server}`);
  }
  const o: {
    headers?: Record<string, string>;
    ca?: string | Buffer;
    cert?: string | Buffer;
    key?: string | Buffer;
    rejectUnauthorized?: boolean;
    servername?: string;
    auth?: string;
  } = {};
  try {
    await t.kc.applyToHTTPSOptions(o as never);
  } catch (e) {
    throw new K8sError(
      "unauthorized",
      `cannot get credentials for context "${t.context}": ${errorMessage(e)}. ` +
        `Check the user's exec plugin or token file in the kubeconfig`,
      { cause: e },
    );
  }
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(o.headers ?? {})) headers[k] = String(v);
  if (o.auth) headers["Authorization"] = `Basic ${Buffer.from(o.auth).toString("base64")}`;
  const cluster = t.kc.getCurrentCluster();
  return {
    host: url.hostname.replace(/^\[|\]$/g, ""),
    port: url.port ? Number(url.port) : 443,
    basePath: url.pathname.replace(/\/$/, ""),
    ca: o.ca,
    cert: o.cert,
    key: o.key,
    rejectUnauthorized: !(cluster?.skipTLSVerify ?? false),
    servername: cluster?.tlsServerName ?? o.servername,
    headers,
  };
}
