/**
 * The user's side of the sudo rule: resolves a kubeconfig, in this process and as its user, into a self-contained
 * ResolvedKube (k8s/resolved.ts) for root. Everything client-node would read or run happens here: the kubeconfig
 * files, the CA, certificate, key and token files, exec credential plugins and auth-providers' commands
 * (gcp, azure, oidc). `tp _kube-as-user` (cli/kube_as_user_command.ts) runs it and writes the result on a pipe.
 */
import { Buffer } from "node:buffer";
import type { KubeConfig, User } from "@kubernetes/client-node";
import { kubeCredentials, type KubeEnv, type KubeOptions, loadKube } from "./kubeconfig.ts";
import type { ResolvedKube } from "./resolved.ts";

/**
 * How long a token read from a file is good for: client-go re-reads a token file every minute
 * (k8s.io/client-go/transport/token_source.go, cachingTokenSource), and so does client-node's FileAuth.
 */
const TOKEN_FILE_MS = 60_000;

/** Resolves the flags as this process's user: loadKube(), then the user's credential, fetched now. */
export async function resolveKube(opts: KubeOptions, env?: KubeEnv, now = Date.now()): Promise<ResolvedKube> {
  const t = loadKube(opts, env);
  const cluster = t.kc.getCurrentCluster();
  const c = await kubeCredentials(t);
  const token = /^Bearer (.+)$/.exec(c.headers["Authorization"] ?? "")?.[1];
  const expires = credentialExpiry(t.kc, t.kc.getCurrentUser(), token, now);
  return {
    context: t.context,
    server: t.server,
    namespace: t.namespace,
    managerNamespace: t.managerNamespace,
    files: t.files,
    auth: t.auth,
    cluster: {
      caData: c.ca === undefined ? undefined : Buffer.from(c.ca).toString("base64"),
      skipTLSVerify: cluster?.skipTLSVerify ?? false,
      tlsServerName: cluster?.tlsServerName ?? c.servername,
      proxyUrl: cluster?.proxyUrl,
    },
    credential: {
      headers: c.headers,
      certData: c.cert === undefined ? undefined : Buffer.from(c.cert).toString("base64"),
      keyData: c.key === undefined ? undefined : Buffer.from(c.key).toString("base64"),
      expires: expires === undefined ? undefined : new Date(expires).toISOString(),
    },
  };
}

/**
 * When the credential just fetched stops being good (ms since the epoch), the earliest of what says so: an exec
 * plugin's expirationTimestamp, an auth-provider's expiry, a JWT's `exp`, a token file's re-read interval.
 * Undefined when nothing does (a token or a certificate written in the kubeconfig).
 */
export function credentialExpiry(
  kc: KubeConfig,
  user: User | null,
  token: string | undefined,
  now: number,
): number | undefined {
  const times: number[] = [];
  const add = (t: number | undefined) => t !== undefined && Number.isFinite(t) && times.push(t);
  const config = (user?.authProvider as { config?: Record<string, unknown> } | undefined)?.config;
  if (user?.exec) add(Date.parse(String(execCache(kc)?.[user.name]?.status?.expirationTimestamp)));
  if (config?.["expiry"] !== undefined) add(Date.parse(String(config["expiry"]))); // gcp, azure (a one-item list)
  if (config?.["expires-on"] !== undefined) add(Number(config["expires-on"]) * 1000); // azure, in seconds
  if (config?.["tokenFile"] !== undefined) add(now + TOKEN_FILE_MS);
  if (token) add(jwtExpiry(token));
  return times.length ? Math.min(...times) : undefined;
}

/**
 * client-node's cache of exec plugin credentials (ExecAuth.tokenCache, by user name): the one place that keeps the
 * plugin's expirationTimestamp. Not public API; tp pins client-node's version (deno.json), and a test checks it.
 */
function execCache(kc: KubeConfig): Record<string, { status?: { expirationTimestamp?: string } } | null> | undefined {
  const list = (kc as unknown as { authenticators?: { tokenCache?: unknown }[] }).authenticators ?? [];
  return list.find((a) => a.tokenCache !== undefined)?.tokenCache as ReturnType<typeof execCache>;
}

/** A JWT's `exp` in ms since the epoch, or undefined when the token is not a JWT. */
function jwtExpiry(token: string): number | undefined {
  const part = token.split(".");
  if (part.length !== 3) return undefined;
  try {
    const exp = JSON.parse(Buffer.from(part[1]!, "base64url").toString("utf8")).exp;
    return typeof exp === "number" ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
