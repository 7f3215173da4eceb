/**
 * The kubectl-style flags of the commands that talk to a cluster. A module of its own, free of the Kubernetes client,
 * so that every tp command does not pay for loading it (about 300 ms) just to register its flags.
 */
import { Command, type OptionValues } from "@commander-js/extra-typings";

/** The flags every command that talks to the cluster takes (what `addKubeOptions` registers). */
export interface KubeOptions {
  /** A kubeconfig file; default KUBECONFIG (colon-separated files), else ~/.kube/config. */
  kubeconfig?: string | undefined;
  /** A context of the kubeconfig; default its current-context. */
  context?: string | undefined;
  /** The workload namespace; default the context's namespace, else "default". */
  namespace?: string | undefined;
  /** Where the traffic-manager runs (default "tp"). */
  managerNamespace?: string | undefined;
}

export const DEFAULT_MANAGER_NAMESPACE = "tp";

/** Registers `--kubeconfig`, `--context`, `-n/--namespace` and `--manager-namespace` on a command. */
export function addKubeOptions<Args extends unknown[], Opts extends OptionValues, G extends OptionValues>(
  cmd: Command<Args, Opts, G>,
) {
  return cmd
    .option("--kubeconfig <file>", "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    .option("--context <name>", "kubeconfig context (default: its current-context)")
    .option("-n, --namespace <namespace>", "namespace (default: the context's, else default)")
    .option("--manager-namespace <namespace>", "namespace of the traffic-manager", DEFAULT_MANAGER_NAMESPACE);
}
