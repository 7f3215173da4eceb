/**
 * The kubectl-style flags of the commands that talk to a cluster. A module of its own, free of the Kubernetes client,
 * so that every tp command does not pay for loading it (about 300 ms) just to register its flags. It stays in cli/
 * because it is commander's; what the flags mean (k8s/options.ts) is shared with the manager.
 */
import { Command, type OptionValues } from "@commander-js/extra-typings";
import { DEFAULT_MANAGER_NAMESPACE } from "../../k8s/options.ts";

export { DEFAULT_MANAGER_NAMESPACE, type KubeOptions } from "../../k8s/options.ts";

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
