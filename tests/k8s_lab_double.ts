/**
 * The API server test double (tests/k8s_double_process.ts) as a process in the lab's cluster namespace, at
 * 198.18.0.2:6443 (as an API server would be), port-forwarding to the lab's traffic-manager. Its folder holds the
 * kubeconfigs it writes and its client certificate for user lab-user.
 */
import { requireTools, ROOT } from "./lab.ts";
import { LAB, spawnInCluster } from "./connect_fixture.ts";

export const API = `${LAB.manager.ip}:6443`;

export interface Double {
  dir: string;
  pid: number;
  /** Stops the double; returns what it counted. */
  stop(): Promise<{ webSocketUpgrades: number; portForwardDials: number; requests: number }>;
}

/** Starts the double and waits until it has written its kubeconfigs. */
export async function startDouble(): Promise<Double> {
  requireTools("openssl");
  const dir = await Deno.makeTempDir({ prefix: "tp-k8s-connect-" });
  const child = spawnInCluster([
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
  ]);
  const stop = async () => {
    await child.stop();
    let stats = { webSocketUpgrades: -1, portForwardDials: -1, requests: -1 };
    try {
      stats = JSON.parse(await Deno.readTextFile(`${dir}/stats.json`));
    } catch { /* it did not get that far */ }
    await Deno.remove(dir, { recursive: true });
    return stats;
  };
  for (let i = 0; i < 150; i++) {
    if (await Deno.stat(`${dir}/ready`).then(() => true, () => false)) {
      return { dir, pid: Number((await Deno.readTextFile(`${dir}/ready`)).trim()), stop };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error(`the API server double did not start within 15 s:\n${child.log()}`);
}
