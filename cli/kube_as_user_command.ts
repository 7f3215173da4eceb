/**
 * `tp _kube-as-user OPTIONS_JSON`: what root runs, as the user who ran sudo, to resolve the kubeconfig (k8s/as_user.ts).
 * It reads the kubeconfig and everything it names, runs its exec plugin or auth-provider, and writes one JSON reply
 * on stdout: `{"ok": ResolvedKube}` or `{"error": {"kind", "message"}}` (k8s/resolved.ts). Internal: never listed,
 * never typed by a person. OPTIONS_JSON holds only the kubectl flags (file and context names), never a secret.
 */
import { K8sError } from "../k8s/errors.ts";
import type { KubeOptions } from "../k8s/options.ts";
import type { HelperReply } from "../k8s/resolved.ts";
import { resolveKube } from "../k8s/resolve.ts";

export async function kubeAsUserMain(args: readonly string[]): Promise<number> {
  let reply: HelperReply;
  try {
    reply = { ok: await resolveKube(parseOptions(args)) };
  } catch (e) {
    const kind = e instanceof K8sError ? e.kind : "no-kubeconfig";
    reply = { error: { kind, message: (e as Error).message } };
  }
  await Deno.stdout.write(new TextEncoder().encode(`${JSON.stringify(reply)}\n`));
  return "ok" in reply ? 0 : 1;
}

function parseOptions(args: readonly string[]): KubeOptions {
  let v: unknown;
  try {
    v = args.length === 1 ? JSON.parse(args[0]!) : undefined;
  } catch { /* reported below */ }
  if (typeof v !== "object" || v === null) {
    throw new TypeError(`_kube-as-user takes OPTIONS_JSON, not "${args.join(" ")}"`);
  }
  const o = v as Record<string, unknown>;
  const opt = (k: keyof KubeOptions) => {
    if (o[k] !== undefined && typeof o[k] !== "string") throw new TypeError(`_kube-as-user: ${k} is not a string`);
    return o[k] as string | undefined;
  };
  return {
    kubeconfig: opt("kubeconfig"),
    context: opt("context"),
    namespace: opt("namespace"),
    managerNamespace: opt("managerNamespace"),
  };
}
