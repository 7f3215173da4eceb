/**
 * A TEST DOUBLE of a kubelet, for the API server double (tests/k8s_apiserver_double.ts): no real kubelet can run on
 * this network. When the double (re)creates a Deployment's pod, this runs the pod as a lab pod (tests/lab_pod.ts: a
 * network namespace of its own on the lab's pod subnet) and reports it Running and Ready with its pod IP; when the
 * double deletes the pod, its processes and namespace go. It runs each container as a kubelet would run its image:
 *
 * - an app container: the lab's echo services (HTTP on the container's port named "http", TCP echo on the one named
 *   "tcp", 8080 and 7007 by default), calling themselves by the workload's name;
 * - the `tp-agent` container tp injects: `tp agent` (this checkout's, whatever the image), configured by its env only;
 * - each container's env as a kubelet resolves it: plain values, the downward API (metadata.namespace, metadata.name,
 *   status.podIP, spec.nodeName) and secretKeyRef from the double's Secrets. Anything else is refused, by name.
 *
 * Cluster DNS names the lab's DNS does not know (the manager's Service, `tp-manager.tp`) are given to each pod as
 * hosts lines (`hosts`), so the agent's env stays as injection wrote it. There is no kube-proxy: a test sends a
 * Service's traffic to a pod IP and the Service's targetPort itself.
 *
 * It must run in the lab's cluster network namespace and in the host's mount namespace (`nsenter --net`, not
 * `ip netns exec`), so that the pod namespaces it makes are visible to the test.
 */
import { Buffer } from "node:buffer";
import type { ApiServerDouble, PodRunner } from "./k8s_apiserver_double.ts";
import { type LabPod, removePod, startPod } from "./lab_pod.ts";

type Obj = Record<string, unknown> & { metadata: Record<string, unknown> };

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    fieldRef?: { fieldPath: string };
    secretKeyRef?: { name: string; key: string; optional?: boolean };
    [other: string]: unknown;
  };
}

interface Container {
  name: string;
  env?: EnvVar[];
  envFrom?: unknown[];
  ports?: { name?: string; containerPort: number }[];
}

/** What the environment of a container resolves against: the pod and a way to read a Secret's key. */
export interface EnvContext {
  namespace: string;
  podName: string;
  podIp: string;
  nodeName: string;
  secret(name: string, key: string): string | undefined;
}

/** A container's env as a kubelet gives it to the process; throws naming what this double cannot resolve. */
export function resolveEnv(c: Container, ctx: EnvContext): Record<string, string> {
  if (c.envFrom?.length) throw new TypeError(`container ${c.name}: envFrom is not run by the kubelet double`);
  const out: Record<string, string> = {};
  for (const e of c.env ?? []) {
    if (e.valueFrom === undefined) {
      out[e.name] = e.value ?? "";
      continue;
    }
    const f = e.valueFrom.fieldRef?.fieldPath;
    const s = e.valueFrom.secretKeyRef;
    if (f !== undefined) {
      const fields: Record<string, string> = {
        "metadata.namespace": ctx.namespace,
        "metadata.name": ctx.podName,
        "status.podIP": ctx.podIp,
        "spec.nodeName": ctx.nodeName,
      };
      if (!(f in fields)) throw new TypeError(`container ${c.name}: env ${e.name}: fieldRef ${f} is not served`);
      out[e.name] = fields[f]!;
    } else if (s) {
      const v = ctx.secret(s.name, s.key);
      if (v === undefined && !s.optional) {
        // The kubelet's words: the container does not start (CreateContainerConfigError).
        throw new Error(`container ${c.name}: couldn't find key ${s.key} in Secret ${ctx.namespace}/${s.name}`);
      }
      if (v !== undefined) out[e.name] = v;
    } else {
      throw new TypeError(`container ${c.name}: env ${e.name}: ${Object.keys(e.valueFrom)[0]} is not served`);
    }
  }
  return out;
}

export interface KubeletOptions {
  /** The namespaces whose pods it runs (the manager's pod is not one of them). */
  namespaces: string[];
  /** hosts lines every pod gets, e.g. "198.18.0.2 tp-manager.tp". */
  hosts: string[];
  /** Lab pod slots: index i has pod IP 198.19.128.(100 + i) and lab pod name `kl<i>`. */
  firstSlot?: number;
  slots?: number;
  log(line: string): void;
}

interface Running {
  uid: string;
  slot: number;
  pod: LabPod;
}

export const AGENT_CONTAINER = "tp-agent";
/** The pod IP of slot i. */
export const slotIp = (i: number) => `198.19.128.${100 + i}`;
export const slotName = (i: number) => `kl${i}`;

export class KubeletDouble implements PodRunner {
  readonly #double: ApiServerDouble;
  readonly #o: KubeletOptions;
  readonly #running = new Map<string, Running>(); // by namespace/name
  #queue: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(double: ApiServerDouble, o: KubeletOptions) {
    this.#double = double;
    this.#o = o;
  }

  /** The double's pod events, run one at a time in order (a pod deleted, then its successor started). */
  podEvent(type: "ADDED" | "MODIFIED" | "DELETED", pod: Obj): void {
    const ns = String(pod.metadata.namespace);
    if (!this.#o.namespaces.includes(ns) || type === "MODIFIED" || this.#closed) return;
    const snapshot = structuredClone(pod);
    this.#queue = this.#queue.then(() => type === "ADDED" ? this.#start(snapshot) : this.#stop(snapshot)).catch(
      (e) => this.#o.log(`kubelet: ${(e as Error).message}`),
    );
  }

  /** Waits for the events so far to be handled (for tests of the kubelet itself). */
  settled(): Promise<void> {
    return this.#queue;
  }

  async #start(pod: Obj): Promise<void> {
    const namespace = String(pod.metadata.namespace), name = String(pod.metadata.name);
    const first = this.#o.firstSlot ?? 10, count = this.#o.slots ?? 8;
    const used = new Set([...this.#running.values()].map((r) => r.slot));
    let slot = -1;
    for (let i = first; i < first + count; i++) {
      if (!used.has(i)) {
        slot = i;
        break;
      }
    }
    if (slot < 0) throw new Error(`no free lab pod slot for pod ${namespace}/${name}`);
    const containers = (pod.spec as { containers?: Container[] }).containers ?? [];
    const app = containers.find((c) => c.name !== AGENT_CONTAINER);
    const agent = containers.find((c) => c.name === AGENT_CONTAINER);
    if (!app) throw new Error(`pod ${namespace}/${name} has no app container`);
    const podIp = slotIp(slot);
    const ctx: EnvContext = {
      namespace,
      podName: name,
      podIp,
      nodeName: String((pod.spec as { nodeName?: string }).nodeName ?? "node-1"),
      secret: (secret, key) => {
        const data = this.#double.get("secrets", namespace, secret)?.data as Record<string, string> | undefined;
        const b64 = data?.[key];
        return b64 === undefined ? undefined : Buffer.from(b64, "base64").toString("utf8");
      },
    };
    const port = (n: string, d: number) => app.ports?.find((p) => p.name === n)?.containerPort ?? d;
    const owner = ((pod.metadata.ownerReferences ?? []) as { name?: string }[])[0]?.name ?? name;
    const lab = await startPod({
      name: slotName(slot),
      index: slot,
      podIp,
      httpPort: port("http", 8080),
      tcpPort: port("tcp", 7007),
      hosts: this.#o.hosts,
      env: resolveEnv(app, ctx),
      appName: owner,
    });
    this.#running.set(`${namespace}/${name}`, { uid: String(pod.metadata.uid), slot, pod: lab });
    const names = [app.name];
    if (agent) {
      await lab.startAgentWithEnv(resolveEnv(agent, ctx));
      names.push(agent.name);
    }
    this.#o.log(`kubelet: pod ${namespace}/${name} runs at ${podIp}: ${names.join(", ")}`);
    this.#report(pod, podIp, names);
  }

  /** Reports the pod Running and Ready with its IP, unless it was deleted (or replaced) meanwhile. */
  #report(pod: Obj, podIp: string, containers: string[]): void {
    const live = this.#double.get("pods", String(pod.metadata.namespace), String(pod.metadata.name));
    if (!live || live.metadata.uid !== pod.metadata.uid) return;
    const next = structuredClone(live);
    next.status = {
      phase: "Running",
      podIP: podIp,
      podIPs: [{ ip: podIp }],
      conditions: [{ type: "Ready", status: "True" }],
      containerStatuses: containers.map((c) => ({ name: c, ready: true, restartCount: 0, state: { running: {} } })),
    };
    this.#double.put(next);
  }

  async #stop(pod: Obj): Promise<void> {
    const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    const r = this.#running.get(key);
    if (!r) return;
    this.#running.delete(key);
    await r.pod.stop();
    this.#o.log(`kubelet: pod ${key} stopped`);
  }

  /** Stops every pod it runs, and removes any lab pod of its slots a crash may have left. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#queue;
    for (const [key, r] of [...this.#running]) {
      this.#running.delete(key);
      await r.pod.stop();
    }
  }
}

/** Removes the lab pods of the kubelet's slots (a test's clean-up after a kubelet that could not close). */
export async function removeKubeletPods(firstSlot = 10, slots = 8): Promise<void> {
  for (let i = firstSlot; i < firstSlot + slots; i++) await removePod(slotName(i));
}
