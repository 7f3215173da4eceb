/**
 * What `tp install` puts in a cluster, as plain objects: the manager's namespace, its service account, the narrowest
 * RBAC that its discovery (manager/k8s_discovery.ts) and its agents' authentication (manager/agent_auth.ts) need,
 * the Deployment and the Service (the clients' port and the agents' port). `tp uninstall` deletes
 * the same list in reverse.
 */
import { DEFAULT_AGENT_PORT, MANAGER_SERVICE } from "./defaults.ts";
import { DEFAULT_MANAGER_PORT, MANAGER_SELECTOR } from "./portforward.ts";

/** A Kubernetes object as sent to the API server. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

export { DEFAULT_IMAGE } from "./defaults.ts";

/** The name of the Service the manager creates (and deletes) to learn the service CIDR from the API's error. */
export const PROBE_SERVICE = "tp-service-cidr-probe";

export interface InstallSpec {
  namespace: string;
  image: string;
  port?: number;
  /** The agents' port (default 8082). */
  agentPort?: number;
}

const MANAGER = MANAGER_SERVICE;

/** Labels on everything tp installs; `managed-by` tells uninstall what it may delete. */
export function commonLabels(): Record<string, string> {
  return { "app.kubernetes.io/part-of": "tp", "app.kubernetes.io/managed-by": "tp" };
}

/** The objects of an install, in creation order. */
export function managerManifests(spec: InstallSpec): K8sObject[] {
  const ns = spec.namespace;
  const port = spec.port ?? DEFAULT_MANAGER_PORT;
  const agentPort = spec.agentPort ?? DEFAULT_AGENT_PORT;
  const labels = commonLabels();
  const [selKey, selValue] = MANAGER_SELECTOR.split("=") as [string, string];
  const podLabels = { [selKey]: selValue, ...labels };
  const clusterName = `${MANAGER}-${ns}`;
  const subject = [{ kind: "ServiceAccount", name: MANAGER, namespace: ns }];
  return [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: ns, labels } },
    { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: MANAGER, namespace: ns, labels } },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: { name: clusterName, labels },
      rules: [
        // Discovery: nodes' podCIDRs, pod IPs (when nodes have no podCIDRs), services; list and watch only.
        { apiGroups: [""], resources: ["nodes", "pods", "services"], verbs: ["list", "watch"] },
        // Agents: each traffic-agent authenticates with the token in Secret tp-agent-<workload> of its namespace
        // (manager/agent_auth.ts reads it). RBAC cannot narrow get to a name prefix nor to namespaces not known
        // yet, so this is get on secrets, cluster-wide; without list or watch the manager can read only a Secret it
        // names, and it names only tp-agent-* ones.
        { apiGroups: [""], resources: ["secrets"], verbs: ["get"] },
      ],
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: clusterName, labels },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: clusterName },
      subjects: subject,
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: { name: `${MANAGER}-service-cidr-probe`, namespace: ns, labels },
      // The service-CIDR probe: create one Service in the manager's namespace (the API refuses it, naming the
      // range) and delete it should it ever be created. RBAC cannot restrict create by name, but can restrict delete.
      rules: [
        { apiGroups: [""], resources: ["services"], verbs: ["create"] },
        { apiGroups: [""], resources: ["services"], verbs: ["delete"], resourceNames: [PROBE_SERVICE] },
      ],
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: `${MANAGER}-service-cidr-probe`, namespace: ns, labels },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: `${MANAGER}-service-cidr-probe` },
      subjects: subject,
    },
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: MANAGER, namespace: ns, labels: podLabels },
      spec: {
        replicas: 1,
        selector: { matchLabels: { [selKey]: selValue } },
        template: {
          metadata: { labels: podLabels },
          spec: {
            serviceAccountName: MANAGER,
            securityContext: {
              runAsNonRoot: true,
              runAsUser: 65532,
              runAsGroup: 65532,
              seccompProfile: { type: "RuntimeDefault" },
            },
            containers: [{
              name: "manager",
              image: spec.image,
              args: ["manager"],
              env: [
                // The client API only on the pod's loopback: port-forwards arrive there (the API server checks
                // pods/portforward), and no other pod can reach it, whatever NetworkPolicies allow.
                { name: "TP_MANAGER_LISTEN", value: `127.0.0.1:${port}` },
                { name: "TP_MANAGER_AGENT_LISTEN", value: `0.0.0.0:${agentPort}` },
                { name: "TP_MANAGER_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
                // A read-only root filesystem: whatever Deno caches goes to the /tmp volume.
                { name: "DENO_DIR", value: "/tmp/deno" },
              ],
              ports: [
                { name: "grpc", containerPort: port, protocol: "TCP" },
                { name: "agent", containerPort: agentPort, protocol: "TCP" },
              ],
              // The kubelet's probes come from outside the pod, where only the agent port listens: a TCP check
              // there (it serves HTTP/2 only, to authenticated agents).
              readinessProbe: { tcpSocket: { port: "agent" }, periodSeconds: 5, failureThreshold: 2 },
              livenessProbe: {
                tcpSocket: { port: "agent" },
                initialDelaySeconds: 5,
                periodSeconds: 10,
                failureThreshold: 3,
              },
              resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "512Mi" } },
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ["ALL"] },
              },
              volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
            }],
            volumes: [{ name: "tmp", emptyDir: { sizeLimit: "64Mi" } }],
          },
        },
      },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: MANAGER, namespace: ns, labels },
      spec: {
        selector: { [selKey]: selValue },
        ports: [
          // Where agents in the cluster reach the manager (k8s/inject.ts agentManagerUrl).
          { name: "agent", port: agentPort, targetPort: "agent", protocol: "TCP" },
        ],
      },
    },
  ];
}

/** `kind/name` (with the namespace when there is one), as kubectl prints it. */
export function objectRef(o: K8sObject): string {
  return `${o.kind.toLowerCase()}/${o.metadata.name}${o.metadata.namespace ? ` -n ${o.metadata.namespace}` : ""}`;
}
