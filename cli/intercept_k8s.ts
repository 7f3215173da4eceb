/**
 * The Kubernetes half of `tp intercept` and `tp uninstall --agent`: when the traffic-manager knows no agent of a
 * workload, tp puts the agent in it (k8s/agent_install.ts) as the invoking user, with their kubeconfig, like kubectl,
 * and waits until the workload's pods run it. The Kubernetes client is loaded only on this path.
 *
 * `waitForAgent` takes its clock and its question ("does the manager know an agent of this workload now?") as
 * arguments, so its timing is tested without a cluster or a wall clock.
 */
import type { AgentInjectResult } from "../k8s/agent_install.ts";
import type { KubeOptions } from "../k8s/options.ts";
import type { ConnectSettings } from "./daemon/settings.ts";
import { ControlError, controlRequest } from "./daemon/control.ts";
import { statePaths } from "./daemon/state.ts";
import { errorMessage } from "../base/error_message.ts";

/**
 * Whether an intercept failed because no traffic-agent serves the workload (the case injection fixes): the manager's
 * NOT_FOUND, its only one for CreateIntercept (manager/intercepts.ts), as the daemon passes its code on.
 */
export function isNoAgentError(e: unknown): boolean {
  return e instanceof ControlError && e.code === "NOT_FOUND";
}

/** `deployment/web` or `web` -> `web`: the name the agents register under. */
export function workloadName(ref: string): string {
  return ref.slice(ref.indexOf("/") + 1);
}

/** The kubeconfig, context and namespaces the connected daemon uses, for the CLI's own Kubernetes calls. */
export function kubeOptionsOf(s: Pick<ConnectSettings, "kubeconfig" | "context" | "namespace" | "managerNamespace">) {
  return {
    ...(s.kubeconfig ? { kubeconfig: s.kubeconfig } : {}),
    ...(s.context ? { context: s.context } : {}),
    namespace: s.namespace,
    ...(s.managerNamespace ? { managerNamespace: s.managerNamespace } : {}),
  } satisfies KubeOptions;
}

/**
 * The connected daemon's Kubernetes settings, when a daemon runs and went through Kubernetes; undefined otherwise
 * (not connected, connected with --manager-url, or its socket not ours to ask).
 */
export async function connectedKube(): Promise<ReturnType<typeof kubeOptionsOf> | undefined> {
  try {
    const st = await controlRequest(statePaths().socket, { op: "status" }, 5_000) as { settings?: ConnectSettings };
    const s = st.settings;
    return s && !s.managerUrl ? kubeOptionsOf(s) : undefined;
  } catch {
    return undefined;
  }
}

export interface WaitClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: WaitClock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
};

export interface WaitOptions {
  /** How long the pods may take to restart and register (default 120 s). */
  timeoutMs?: number;
  /** How often to ask (default 500 ms). */
  pollMs?: number;
  /** How often to say that tp is still waiting (default 5 s). */
  progressEveryMs?: number;
  clock?: WaitClock;
  /** A progress line ("waiting for web's pods to restart with the agent (5 s)"). */
  onProgress?: (line: string) => void;
}

/** Raised when the workload's pods did not register an agent in time; its message says what to look at. */
export class AgentWaitTimeout extends Error {
  override name = "AgentWaitTimeout";
}

/**
 * Asks `registered()` until it says yes, for at most `timeoutMs`, with a progress line at the start and then every
 * `progressEveryMs`. `what` describes the workload for messages: { ref: "deployment/web", namespace: "default" }.
 */
export async function waitForAgent(
  what: { ref: string; namespace: string; restarting: boolean },
  registered: () => Promise<boolean>,
  o: WaitOptions = {},
): Promise<number> {
  const clock = o.clock ?? realClock;
  const timeoutMs = o.timeoutMs ?? 120_000;
  const pollMs = o.pollMs ?? 500;
  const every = o.progressEveryMs ?? 5_000;
  const name = workloadName(what.ref);
  const line = (ms: number) =>
    what.restarting
      ? `waiting for ${name}'s pods to restart with the agent (${Math.round(ms / 1000)} s)`
      : `waiting for ${name}'s agent to register with the traffic-manager (${Math.round(ms / 1000)} s)`;
  const start = clock.now();
  let nextProgress = start;
  // Bounded in count as well as in time: a clock that stands still cannot make this spin forever.
  const rounds = Math.ceil(timeoutMs / Math.max(1, pollMs)) + 1;
  for (let i = 0; i < rounds; i++) {
    const elapsed = clock.now() - start;
    if (await registered()) return clock.now() - start;
    if (elapsed >= timeoutMs) break;
    if (clock.now() >= nextProgress) {
      o.onProgress?.(line(elapsed));
      nextProgress += every;
    }
    await clock.sleep(Math.min(pollMs, Math.max(1, timeoutMs - elapsed)));
  }
  const ns = what.namespace;
  throw new AgentWaitTimeout(
    `${what.ref}'s pods did not register tp's traffic-agent with the traffic-manager within ` +
      `${Math.round(timeoutMs / 1000)} s: see \`kubectl get pods -n ${ns}\` and ` +
      `\`kubectl logs -n ${ns} ${what.ref} -c tp-agent\`, or wait longer with --timeout`,
  );
}

/** What `tp intercept` does on the Kubernetes path before it intercepts: inject, then wait. */
export async function injectAndWait(
  settings: ConnectSettings,
  workload: string,
  o: { registered: (name: string) => Promise<boolean>; progress: (line: string) => void } & WaitOptions,
): Promise<AgentInjectResult> {
  const [{ findWorkload, injectAgent }, { loadKube }, { workloadRef }] = await Promise.all([
    import("../k8s/agent_install.ts"),
    import("../k8s/kubeconfig.ts"),
    import("../k8s/inject.ts"),
  ]);
  const t = loadKube(kubeOptionsOf(settings));
  const ns = settings.namespace;
  const found = await findWorkload(t, ns, workload);
  const ref = workloadRef(found.kind, found.object.metadata!.name!);
  o.progress(`injecting tp's traffic-agent into ${ref}`);
  let r: AgentInjectResult;
  try {
    r = await injectAgent(t, ns, ref, { onProgress: o.progress });
  } catch (e) {
    throw new Error(`cannot inject tp's traffic-agent into ${ref}: ${errorMessage(e)}`, { cause: e });
  }
  if (r.action === "present") o.progress(`${ref} has tp's agent already (in its pod template)`);
  await waitForAgent(
    { ref, namespace: ns, restarting: r.action === "injected" },
    () => o.registered(r.name),
    { ...o, onProgress: o.progress },
  );
  return r;
}
