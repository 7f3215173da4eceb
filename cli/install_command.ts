/**
 * `tp install` and `tp uninstall`: put the traffic-manager in a cluster (namespace, service account, RBAC,
 * Deployment, Service) or take it out. `tp install --dry-run -o yaml` prints what install would create.
 */
import { Command, Option } from "@commander-js/extra-typings";
import { stringify } from "yaml";
import type { ObjectResult } from "../k8s/install.ts";
import { addKubeOptions, type KubeOptions } from "./k8s/flags.ts";
import { UsageError } from "./errors.ts";
import { DEFAULT_IMAGE } from "../k8s/defaults.ts";

/** The Kubernetes client, loaded only by the commands that use it (it takes ~300 ms to load). */
async function k8s() {
  const [install, kubeconfig, manifests] = await Promise.all([
    import("../k8s/install.ts"),
    import("../k8s/kubeconfig.ts"),
    import("../k8s/manifests.ts"),
  ]);
  return { ...install, ...kubeconfig, ...manifests };
}
import { printJson } from "./output.ts";

function outputOption() {
  return new Option("-o, --output <format>", "output format: text, json, or yaml (the manifests)")
    .choices(["text", "json", "yaml"] as const).default("text" as const);
}

function line(r: ObjectResult): string {
  return `${r.kind.toLowerCase()}/${r.name}${r.namespace ? ` (namespace ${r.namespace})` : ""} ${r.action}`;
}

/** `tp install [--image IMAGE] [--dry-run] [-o text|json|yaml] [--no-wait] [--timeout SECONDS]`. */
export function installCommand() {
  return addKubeOptions(
    new Command("install")
      .description("install the traffic-manager in the cluster (namespace --manager-namespace, default tp)")
      .addOption(new Option("--image <ref>", "the manager's image").env("TP_MANAGER_IMAGE").default(DEFAULT_IMAGE))
      .option("--dry-run", "print the objects instead of creating them")
      .option("--no-wait", "do not wait for the manager pod to be ready")
      .option("--timeout <seconds>", "how long to wait for the manager pod", "120")
      .addOption(outputOption()),
  ).action(async (opts) => {
    const { managerManifests, loadKube, applyObjects, waitForManager } = await k8s();
    const ns = opts.managerNamespace;
    const objects = managerManifests({ namespace: ns, image: opts.image });
    if (opts.dryRun) {
      if (opts.output === "json") printJson({ apiVersion: "v1", kind: "List", items: objects });
      else console.log(objects.map((o) => stringify(o).trimEnd()).join("\n---\n"));
      return;
    }
    const t = loadKube(opts);
    const text = opts.output === "text";
    const results = await applyObjects(t, objects, (r) => text && console.log(line(r)));
    let pod: string | undefined;
    if (opts.wait) {
      const timeout = Number(opts.timeout);
      if (!(timeout > 0)) throw new Error(`--timeout must be a positive number of seconds, got "${opts.timeout}"`);
      pod = await waitForManager(t, {
        timeoutMs: timeout * 1000,
        onProgress: (m) => text && console.error(`waiting: ${m}`),
      });
      if (text) console.log(`traffic-manager pod ${pod} is ready`);
    }
    if (opts.output === "json") printJson({ context: t.context, namespace: ns, objects: results, pod: pod ?? null });
    else if (opts.output === "yaml") console.log(stringify({ context: t.context, namespace: ns, objects: results }));
  });
}

/**
 * `tp uninstall`: delete what `tp install` created (the namespace only if tp created it). With `--agent WORKLOAD` or
 * `--all-agents`: take tp's traffic-agent out of workloads instead, putting back what injection changed.
 */
export function uninstallCommand() {
  return addKubeOptions(
    new Command("uninstall")
      .description(
        "remove the traffic-manager and everything tp install created; or, with --agent or --all-agents, remove " +
          "tp's traffic-agent from workloads and restore them and their Services",
      )
      .option(
        "--agent <workload>",
        "remove the traffic-agent from this workload (deployment/NAME, ...), not the manager",
      )
      .option("--all-agents", "remove the traffic-agent from every workload of the namespace, not the manager")
      .addOption(outputOption()),
  ).action(async (opts) => {
    if (opts.agent !== undefined || opts.allAgents) return await uninstallAgents(opts);
    const { managerManifests, loadKube, deleteObjects } = await k8s();
    const t = loadKube(opts);
    const objects = managerManifests({ namespace: opts.managerNamespace, image: DEFAULT_IMAGE });
    const text = opts.output === "text";
    const results = await deleteObjects(t, objects, (r) => text && console.log(line(r)));
    if (opts.output === "json") printJson({ context: t.context, namespace: opts.managerNamespace, objects: results });
    else if (opts.output === "yaml") console.log(stringify({ context: t.context, objects: results }));
  });
}

/**
 * `tp uninstall --agent WORKLOAD | --all-agents`. Without --kubeconfig, --context and -n, and while tp is connected
 * through Kubernetes, it works where `tp intercept` injected: the connected daemon's context and namespace.
 */
async function uninstallAgents(opts: KubeOptions & { agent?: string; allAgents?: true; output: string }) {
  if (opts.agent !== undefined && opts.allAgents) {
    throw new UsageError("give --agent WORKLOAD or --all-agents, not both");
  }
  const [{ removeAgent, removeAllAgents }, { loadKube }, { connectedKube }] = await Promise.all([
    import("../k8s/agent_install.ts"),
    import("../k8s/kubeconfig.ts"),
    import("./intercept_k8s.ts"),
  ]);
  const text = opts.output === "text";
  const own = opts.kubeconfig === undefined && opts.context === undefined && opts.namespace === undefined;
  const daemon = own ? await connectedKube() : undefined;
  const t = loadKube(daemon ? { ...daemon, managerNamespace: opts.managerNamespace } : opts);
  if (daemon && text) console.error(`tp: in the connected context "${t.context}", namespace ${t.namespace}`);
  const onProgress = (m: string) => text && console.log(m);
  const results = opts.allAgents
    ? await removeAllAgents(t, t.namespace, { onProgress })
    : [await removeAgent(t, t.namespace, opts.agent!, { onProgress })];
  if (text) {
    for (const r of results) {
      const ref = `${r.kind.toLowerCase()}/${r.name}`;
      console.log(
        r.action === "removed" ? `${ref}: tp's traffic-agent removed` : `${ref} has no traffic-agent of tp's`,
      );
    }
    if (opts.allAgents && results.length === 0) console.log(`no workload in namespace ${t.namespace} has tp's agent`);
  }
  const out = { context: t.context, namespace: t.namespace, agents: results };
  if (opts.output === "json") printJson(out);
  else if (opts.output === "yaml") console.log(stringify(out).trimEnd());
}
