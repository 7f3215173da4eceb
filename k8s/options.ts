/**
 * What locates a cluster, as kubectl's flags name it. A module of its own, free of the Kubernetes client and of
 * commander, so that the CLI's flag definitions (cli/k8s/flags.ts) and the manager can both use it without loading
 * either.
 */

/** The flags every command that talks to the cluster takes (what cli/k8s/flags.ts `addKubeOptions` registers). */
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
