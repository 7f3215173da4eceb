/**
 * The API server test double (tests/k8s_double_process.ts) as a process in the lab's cluster namespace, at
 * 198.18.0.2:6443 (as an API server would be), port-forwarding to the lab's traffic-manager. Its folder holds the
 * kubeconfigs it writes and its client certificate for user lab-user. With `kubelet`, its kubelet double
 * (tests/k8s_kubelet_double.ts) runs the Deployments' pods as lab pods.
 */
import { requireTools, ROOT } from "./lab.ts";
import { type ClusterProcess, LAB, spawnInNs } from "./connect_fixture.ts";

export const API = `${LAB.manager.ip}:6443`;

export interface DoubleOptions {
  /**
   * Run the kubelet double, giving each pod these hosts lines ("IP NAME..."). The double then runs in the cluster's
   * network namespace but the host's mount namespace (`nsenter --net`), so the pod namespaces its kubelet makes are
   * the caller's too; stopping it stops its pods (each SIGTERM, then SIGKILL after 3 s), so it gets 15 s to end.
   */
  kubeletHosts?: string[];
}

export interface Double {
  dir: string;
  /** The double's own pid (it wrote it to its `ready` file): SIGUSR1 grows the pod subnets, SIGUSR2 cuts forwards. */
  pid: number;
  /** `${dir}/kubeconfig`: context `lab`, namespace default, the double's token. */
  kubeconfig: string;
  /** The last 50 kB of its stderr. */
  log(): string;
  /** Stops the double and removes its folder; returns what it counted. */
  stop(): Promise<{ webSocketUpgrades: number; portForwardDials: number; requests: number }>;
}

/** Starts the double and waits until it has written its kubeconfigs. */
export async function startDouble(opts: DoubleOptions = {}): Promise<Double> {
  requireTools("openssl");
  const dir = await Deno.makeTempDir({ prefix: "tp-k8s-double-" });
  const argv = [
    Deno.execPath(),
    "run",
    "-A",
    `${ROOT}/tests/k8s_double_process.ts`,
    "--listen",
    API,
    "--forward",
    `${LAB.manager.ip}:${LAB.manager.port}`,
    "--dir",
    dir,
  ];
  let child: ClusterProcess;
  if (opts.kubeletHosts) {
    argv.push("--kubelet-hosts", opts.kubeletHosts.join(";"));
    child = spawnInNs(LAB.namespaces.cluster, argv, { netOnly: true, killAfterMs: 15_000 });
  } else {
    child = spawnInNs(LAB.namespaces.cluster, argv);
  }
  const stop = async () => {
    await child.stop();
    let stats = { webSocketUpgrades: -1, portForwardDials: -1, requests: -1 };
    try {
      stats = JSON.parse(await Deno.readTextFile(`${dir}/stats.json`));
    } catch { /* it did not get that far */ }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    return stats;
  };
  for (let i = 0; i < 150 && !child.exited(); i++) {
    if (await Deno.stat(`${dir}/ready`).then(() => true, () => false)) {
      const pid = Number((await Deno.readTextFile(`${dir}/ready`)).trim());
      return { dir, pid, kubeconfig: `${dir}/kubeconfig`, log: () => child.log(), stop };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error(`the API server double did not start within 15 s:\n${child.log()}`);
}
