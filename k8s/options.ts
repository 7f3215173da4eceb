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

/**
 * tp's internal command that resolves a kubeconfig as the user who ran sudo, for root (k8s/as_user.ts runs it,
 * cli/kube_as_user_command.ts is it). Never listed, never typed by a person.
 */
export const KUBE_AS_USER_COMMAND = "_kube-as-user";
