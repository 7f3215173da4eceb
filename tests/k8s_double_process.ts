/**
 * The API server test double (`k8s_apiserver_double.ts`) as a process of its own, so it can run inside the lab's
 * cluster namespace like a real API server: `tp connect` in the workstation namespace reaches it over the lab's one
 * veth, and its port-forward reaches the traffic-manager inside the cluster.
 *
 *   deno run -A tests/k8s_double_process.ts --listen 198.18.0.2:6443 --forward 198.18.0.2:8081 --dir DIR
 *
 * With `--kubelet-hosts "IP NAME...;IP NAME..."` a kubelet double (tests/k8s_kubelet_double.ts) runs the pods of
 * namespace default as lab pods, each with those hosts lines; start the process with `nsenter --net=...` then (see
 * there).
 *
 * Writes DIR/kubeconfig (context "lab", a bearer token), DIR/ca.crt and, for user lab-user, DIR/client.crt and
 * DIR/client.key, then DIR/ready. Its cluster has the lab's subnets (node-a holds the pod CIDRs); SIGUSR1 adds node-b
 * with 198.19.144.0/24; SIGUSR2 cuts every port-forward. On SIGTERM writes DIR/stats.json (requests and
 * port-forward connections counted) and exits. A test double: no real API server can run on this network.
 */
import { ApiServerDouble } from "./k8s_apiserver_double.ts";
import { makePki } from "./k8s_certs.ts";
import { KubeletDouble } from "./k8s_kubelet_double.ts";

export const DOUBLE_TOKEN = "token-lab-user";

const args = new Map<string, string>();
for (let i = 0; i < Deno.args.length; i += 2) args.set(Deno.args[i]!.replace(/^--/, ""), Deno.args[i + 1] ?? "");
const [host, port] = (args.get("listen") ?? "198.18.0.2:6443").split(":");
const [fhost, fport] = (args.get("forward") ?? "198.18.0.2:8081").split(":");
const dir = args.get("dir");
if (!dir) throw new TypeError("--dir is required");

const pki = makePki();
const double = await ApiServerDouble.start({
  pki,
  host: host!,
  port: Number(port),
  tokens: { [DOUBLE_TOKEN]: "lab-user" },
  portForwardTarget: () => ({ host: fhost!, port: Number(fport) }),
  serviceCidrs: ["198.19.0.0/24", "2001:db8:5::/112"], // the lab's
});
const kubeletHosts = args.get("kubelet-hosts");
const kubelet = kubeletHosts === undefined ? undefined : new KubeletDouble(double, {
  namespaces: ["default"],
  hosts: kubeletHosts.split(";").map((h) => h.trim()).filter(Boolean),
  log: (line) => console.error(line),
});
double.attachKubelet(kubelet);
double.addNode("node-a", ["198.19.128.0/20", "2001:db8:6::/64"]);
// SIGUSR1: a node joins with a pod CIDR of its own, as when a cluster grows.
Deno.addSignalListener("SIGUSR1", () => double.addNode("node-b", ["198.19.144.0/24"]));
// SIGUSR2: every port-forward connection is cut, as when the API server restarts.
Deno.addSignalListener("SIGUSR2", () => double.dropPortForwards());
double.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: "tp" } });
double.addPod("tp", "tp-manager-7c9d", { labels: { "app.kubernetes.io/name": "tp-manager" }, ports: [Number(fport)] });
Deno.writeTextFileSync(`${dir}/kubeconfig`, double.kubeconfig({ token: DOUBLE_TOKEN, context: "lab" }));
Deno.writeTextFileSync(`${dir}/kubeconfig-wrong-token`, double.kubeconfig({ token: "not-the-token", context: "lab" }));
const client = pki.clientCert("lab-user");
Deno.writeTextFileSync(`${dir}/ca.crt`, pki.caCert);
Deno.writeTextFileSync(`${dir}/client.crt`, client.cert);
Deno.writeTextFileSync(`${dir}/client.key`, client.key);
Deno.writeTextFileSync(`${dir}/ready`, `${Deno.pid}\n`);

Deno.addSignalListener("SIGTERM", async () => {
  Deno.writeTextFileSync(
    `${dir}/stats.json`,
    JSON.stringify({
      webSocketUpgrades: double.webSocketUpgrades,
      portForwardDials: double.portForwardDials,
      requests: double.requests.length,
    }),
  );
  await kubelet?.close();
  await double.close();
  pki.remove();
  Deno.exit(0);
});
