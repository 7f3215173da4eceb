/**
 * Root's side of the sudo rule (Telepresence's model: a user-level process reads the credentials and hands the root
 * daemon only what it needs). Under sudo, root reads no kubeconfig, CA, certificate, key or token file and runs no
 * exec plugin or auth-provider command: it runs tp's helper, `tp _kube-as-user`, as the user who ran sudo (setpriv:
 * their uid, gid and groups, their HOME), which does all of it (k8s/resolve.ts) and writes a self-contained config
 * on a pipe. Root builds its KubeTarget from that: the cluster's CA inline, and a credential that, once it expires,
 * is fetched again by running the helper again, as the user. A daemon that reconnects hours later calls loadKube()
 * again, so it gets a fresh credential the same way.
 */
import { Buffer } from "node:buffer";
import { KubeConfig, type User } from "@kubernetes/client-node";
import { K8sError, type K8sErrorKind } from "./errors.ts";
import type { InvokingUser, KubeTarget } from "./target.ts";
import { KUBE_AS_USER_COMMAND, type KubeOptions } from "./options.ts";
import { parseHelperReply, type ResolvedCredential, type ResolvedKube } from "./resolved.ts";

/** The helper's bound: exec plugins may log in through a browser (kubelogin), so it is long. */
const HELPER_TIMEOUT_S = 120;
/** A credential is fetched again this long before it expires, so that no request carries an expired one. */
const EXPIRY_MARGIN_MS = 10_000;
/** The auth-provider name of root's user: no authenticator of client-node claims it, so UserCredentials answers. */
export const AS_USER_PROVIDER = "tp-as-user";

/** Environment variables root never hands the user's helper: tp's secrets, and sudo's (it is the user now). */
const DROPPED_ENV = /^(TP_TOKEN|SUDO_\w+)$/;

/** Resolves the flags through the helper, as `who`; throws the helper's K8sError, or one saying why it failed. */
export function loadKubeAsUser(opts: KubeOptions, who: InvokingUser): KubeTarget {
  const cmd = helperCommand(who, opts);
  // The helper's own environment only (clearEnv), its answer on stdout; run now and again on each refresh.
  const helper = new Deno.Command(cmd.argv[0]!, {
    args: cmd.argv.slice(1),
    env: cmd.env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const out = helper.outputSync();
  const first = helperResult(out, who, "no-kubeconfig");
  const refresh = async () => {
    const again = await helper.output();
    return helperResult(again, who, "unauthorized").credential;
  };
  return resolvedTarget(first, refresh);
}

/** The helper's command line and environment: tp itself, as `who`, bounded in time. */
export function helperCommand(
  who: InvokingUser,
  opts: KubeOptions,
  env: Record<string, string> = Deno.env.toObject(),
  self: string[] = tpArgv(),
): { argv: string[]; env: Record<string, string> } {
  const request: KubeOptions = {
    kubeconfig: opts.kubeconfig,
    context: opts.context,
    namespace: opts.namespace,
    managerNamespace: opts.managerNamespace,
  };
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (!DROPPED_ENV.test(k)) childEnv[k] = v;
  Object.assign(childEnv, { HOME: who.home, USER: who.name, LOGNAME: who.name });
  return {
    argv: [
      "setpriv",
      `--reuid=${who.uid}`,
      `--regid=${who.gid}`,
      "--init-groups",
      "--",
      "timeout",
      "--kill-after=5",
      String(HELPER_TIMEOUT_S),
      ...self,
      KUBE_AS_USER_COMMAND,
      JSON.stringify(request),
    ],
    env: childEnv,
  };
}

/**
 * How to run this same tp: the compiled binary, or `deno run` of the entry point. (cli/process.ts's selfArgv(), which
 * k8s/ cannot import: it sits below cli/. The entry point is named here by path only.)
 */
function tpArgv(): string[] {
  const exe = Deno.execPath();
  if (!/(^|\/)deno$/.test(exe)) return [exe];
  return [exe, "run", "--allow-all", "--quiet", new URL("../cli/main.ts", import.meta.url).pathname];
}

/** The helper's reply, or a K8sError (of `kind` when the helper said nothing usable) naming what went wrong. */
function helperResult(out: Deno.CommandOutput, who: InvokingUser, kind: K8sErrorKind): ResolvedKube {
  const text = new TextDecoder().decode(out.stdout);
  try {
    return parseHelperReply(text);
  } catch (e) {
    if (e instanceof K8sError) throw e;
    const said = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join("; ").slice(0, 500);
    const why = out.code === 124 ? `it did not finish within ${HELPER_TIMEOUT_S} s` : `exit ${out.code}`;
    throw new K8sError(
      kind,
      `cannot read the kubeconfig as ${who.name} (uid ${who.uid}), who ran sudo: tp's helper failed (${why}` +
        `${said ? `: ${said}` : ""}; ${(e as Error).message})`,
      { cause: e },
    );
  }
}

/**
 * Root's KubeTarget from the helper's config: nothing in it names a file or a command. Its credential is `r`'s until
 * that expires, then what `refresh` fetches.
 */
export function resolvedTarget(r: ResolvedKube, refresh: () => Promise<ResolvedCredential>): KubeTarget {
  const kc = new KubeConfig();
  kc.addAuthenticator(new UserCredentials(r.credential, refresh));
  const user: User = { name: "user", authProvider: { name: AS_USER_PROVIDER, config: {} } };
  kc.loadFromOptions({
    clusters: [{
      name: "cluster",
      server: r.server,
      skipTLSVerify: r.cluster.skipTLSVerify,
      ...(r.cluster.caData ? { caData: r.cluster.caData } : {}),
      ...(r.cluster.tlsServerName ? { tlsServerName: r.cluster.tlsServerName } : {}),
      ...(r.cluster.proxyUrl ? { proxyUrl: r.cluster.proxyUrl } : {}),
    }],
    users: [user],
    contexts: [{ name: r.context, cluster: "cluster", user: "user", namespace: r.namespace }],
    currentContext: r.context,
  });
  return {
    kc,
    context: r.context,
    server: r.server,
    namespace: r.namespace,
    managerNamespace: r.managerNamespace,
    files: r.files,
    auth: r.auth,
  };
}

/** The part of client-node's https options an authenticator sets. */
interface AuthOptions {
  headers?: Record<string, string>;
  cert?: string | Buffer;
  key?: string | Buffer;
}

/**
 * A client-node authenticator (KubeConfig.addAuthenticator) for root's user: the credential the helper fetched,
 * until it expires; then the helper's again, fetched as the user (one fetch at a time).
 */
export class UserCredentials {
  #current: ResolvedCredential;
  #pending: Promise<ResolvedCredential> | undefined;
  readonly #fetch: () => Promise<ResolvedCredential>;
  readonly #now: () => number;

  constructor(first: ResolvedCredential, fetch: () => Promise<ResolvedCredential>, now: () => number = Date.now) {
    this.#current = first;
    this.#fetch = fetch;
    this.#now = now;
  }

  isAuthProvider(user: User): boolean {
    return (user?.authProvider as { name?: string } | undefined)?.name === AS_USER_PROVIDER;
  }

  async applyAuthentication(_user: User, opts: AuthOptions): Promise<void> {
    const c = await this.credential();
    opts.headers = { ...opts.headers, ...c.headers };
    if (c.certData) opts.cert = Buffer.from(c.certData, "base64");
    if (c.keyData) opts.key = Buffer.from(c.keyData, "base64");
  }

  /** The credential to use now: the one held while it is good, else a fresh one. */
  async credential(): Promise<ResolvedCredential> {
    const expires = this.#current.expires === undefined ? Infinity : Date.parse(this.#current.expires);
    if (expires - EXPIRY_MARGIN_MS > this.#now()) return this.#current;
    this.#pending ??= this.#fetch().finally(() => (this.#pending = undefined));
    this.#current = await this.#pending;
    return this.#current;
  }
}
