/**
 * A workload's volume mount that comes back. sshfs rides one MountTunnel stream. A resumable one (the manager agreed)
 * rides out a broken link that the session resumes within the manager's grace: sshfs only sees a pause, and nothing
 * here happens. Otherwise (past the grace, a restarted manager, an older manager) the daemon resets the stream, sshfs
 * exits, and the mount is dead ("Transport endpoint is not connected"). A KeptMount notices, says so (`reconnecting`, with the reason), and once
 * the link is back and the intercept made again (`linkBack`), mounts the pod's volumes again at the same directory:
 * it opens a new stream first (so a dead mount stays loud, never an empty directory, while nothing can serve it),
 * then unmounts the dead FUSE mount (lazily when a shell or an open file still holds it: they keep the dead one and
 * see ENOTCONN; new lookups of the path see the new mount), then runs sshfs on the new stream. A stream that ends
 * while the link is up (the agent's pod restarted, its sftp-server died) is retried the same way, RETRY_DELAYS_MS
 * apart, and then the mount is `failed` with the last reason, the dead mount left for `tp leave`/`tp quit`.
 */
import type { ProcessBridgeEnd } from "../../proto/byte_stream_process.ts";
import type { UnmountResult } from "../mount/mod.ts";
import { errorMessage } from "../../base/error_message.ts";

/** What a KeptMount needs of a mount (SshfsMount has it; tests pass doubles). */
export interface LiveMount {
  readonly dir: string;
  readonly exited: boolean;
  readonly ended: Promise<Pick<ProcessBridgeEnd, "reason">>;
  unmount(): Promise<UnmountResult>;
}

/** The stream a new mount rides, opened and accepted by the agent, not yet given to sshfs. */
export interface OpenedStream {
  /** Gives up on the stream (a mount that will not be made on it). */
  reset(reason: string): void;
}

export interface KeptMountHooks<S extends OpenedStream, M extends LiveMount> {
  /** Opens a mount stream to the workload's agent on the current session; throws why not. */
  open(): Promise<S>;
  /** Mounts the stream at `dir` (sshfs); throws why not, with the stream reset and nothing mounted. */
  mount(stream: S, dir: string): Promise<M>;
  /** Whether the link to the manager is up now (a new stream can be opened). */
  linkUp(): boolean;
  log(line: string): void;
}

/** mounted: sshfs serves it; reconnecting: its stream ended and a new one is on its way; failed: given up (reason). */
export type KeptMountState = "mounted" | "reconnecting" | "failed";

export interface KeptMountStatus {
  namespace: string;
  workload: string;
  dir: string;
  state: KeptMountState;
  /** Why it is reconnecting or failed. */
  reason?: string;
  /** When it entered this state (ISO). */
  since: string;
  /** Times it was mounted again after its stream ended. */
  remounts: number;
  /** state === "mounted" (what `tp status -o json` said before the states). */
  alive: boolean;
}

/** Waits between attempts while the link is up; after the last, the mount has failed. */
export const RETRY_DELAYS_MS = [500, 1_000, 2_000, 4_000, 8_000, 8_000] as const;
/** How long a remount waits for the old sshfs to exit on its own before unmounting kills it. */
const OLD_EXIT_WAIT_MS = 5_000;

export class KeptMount<S extends OpenedStream, M extends LiveMount> {
  #mount: M;
  #state: KeptMountState = "mounted";
  #reason = "";
  #since = new Date().toISOString();
  #remounts = 0;
  #closed = false;
  /** The remount under way, if any (one at a time). */
  #busy: Promise<void> | undefined;
  /** Another pass is wanted when the current one ends (the link came back while it ran). */
  #again = false;
  /** Cuts a wait between attempts short. */
  #wake: (() => void) | undefined;
  /** The dead mount already unmounted by a remount whose new mount then failed. */
  #gone: M | undefined;

  constructor(
    readonly namespace: string,
    readonly workload: string,
    mount: M,
    readonly hooks: KeptMountHooks<S, M>,
    readonly retryDelaysMs: readonly number[] = RETRY_DELAYS_MS,
  ) {
    this.#mount = mount;
    this.#follow(mount);
  }

  get dir(): string {
    return this.#mount.dir;
  }

  get state(): KeptMountState {
    return this.#state;
  }

  /** The mount now (a new one after each remount). */
  get current(): M {
    return this.#mount;
  }

  status(): KeptMountStatus {
    return {
      namespace: this.namespace,
      workload: this.workload,
      dir: this.dir,
      state: this.#state,
      ...(this.#state !== "mounted" && this.#reason ? { reason: this.#reason } : {}),
      since: this.#since,
      remounts: this.#remounts,
      alive: this.#state === "mounted",
    };
  }

  /**
   * The link is back and the workload intercepted again: a mount whose stream went with the old connection is made
   * again now. `streamLost` is true when the mount's stream surely ended (the old connection carried it), even if
   * sshfs has not exited yet.
   */
  linkBack(streamLost: boolean): void {
    if (this.#closed) return;
    if (this.#state === "mounted" && !streamLost && !this.#mount.exited) return;
    if (this.#state === "mounted") this.#setState("reconnecting", "the link to the traffic-manager broke");
    this.#remount();
  }

  /** The workload cannot be intercepted again (after a reconnection): the mount cannot come back. */
  fail(reason: string): void {
    if (this.#closed || this.#busy) return;
    this.#setState("failed", reason);
  }

  /** Unmounts for good (leave, quit): waits for a remount under way, then unmounts what is there. */
  async close(): Promise<UnmountResult> {
    this.#closed = true;
    this.#wake?.();
    await this.#busy;
    return await this.#mount.unmount();
  }

  #follow(m: M): void {
    void m.ended.then((end) => {
      if (this.#closed || this.#mount !== m) return;
      const why = `its stream ended (${end.reason})`;
      if (this.#state === "mounted") this.#setState("reconnecting", why);
      if (this.#busy) return; // a remount is under way already (the link came back before sshfs exited)
      if (this.hooks.linkUp()) {
        this.hooks.log(`the mount of ${this.workload}'s volumes at ${m.dir}: ${why}; mounting it again`);
        this.#remount();
      } else {
        this.hooks.log(
          `the mount of ${this.workload}'s volumes at ${m.dir}: ${why}; it comes back with the link to the ` +
            `traffic-manager`,
        );
      }
    });
  }

  #setState(state: KeptMountState, reason: string): void {
    this.#state = state;
    this.#reason = reason;
    this.#since = new Date().toISOString();
  }

  #remount(): void {
    if (this.#busy) {
      this.#again = true;
      this.#wake?.();
      return;
    }
    this.#busy = (async () => {
      do {
        this.#again = false;
        await this.#attempts();
      } while (this.#again && !this.#closed && this.#state !== "mounted");
    })().finally(() => (this.#busy = undefined));
  }

  /** Tries RETRY_DELAYS_MS.length + 1 times while the link is up; a link that goes down ends the pass (linkBack). */
  async #attempts(): Promise<void> {
    const t0 = performance.now();
    for (let attempt = 0;; attempt++) {
      if (this.#again) { // the link came back during the wait: a fresh series
        this.#again = false;
        attempt = 0;
      }
      if (this.#closed) return;
      if (!this.hooks.linkUp()) return; // linkBack starts the next pass
      /** The stream opened and not yet handed to `mount` (which resets it when it fails): reset when this try fails. */
      let stream: S | undefined;
      try {
        stream = await this.hooks.open();
        await this.#letGoOfOld();
        if (this.#closed) {
          stream.reset("the mount was closed meanwhile");
          return;
        }
        const given = stream;
        stream = undefined;
        const m = await this.hooks.mount(given, this.#mount.dir);
        this.#mount = m;
        this.#remounts++;
        this.#setState("mounted", "");
        this.#follow(m);
        this.hooks.log(
          `mounted ${this.workload}'s volumes again at ${m.dir} (${Math.round(performance.now() - t0)} ms, ` +
            `${attempt + 1} attempt(s))`,
        );
        return;
      } catch (e) {
        const why = errorMessage(e);
        stream?.reset(`no mount rides it: ${why}`); // the old mount would not go: nothing may stay open at the agent
        const delay = this.retryDelaysMs[attempt];
        if (delay === undefined || this.#closed) {
          if (!this.#closed) {
            this.#setState("failed", why);
            this.hooks.log(`cannot mount ${this.workload}'s volumes again at ${this.#mount.dir}: ${why}; giving up`);
          }
          return;
        }
        this.#reason = why;
        this.hooks.log(`cannot mount ${this.workload}'s volumes again yet (${why}); trying again in ${delay} ms`);
        await this.#sleep(delay);
      }
    }
  }

  /** The dead mount goes (lazily when something still holds it), and the old sshfs with it. Once per mount. */
  async #letGoOfOld(): Promise<void> {
    const old = this.#mount;
    if (this.#gone === old) return;
    this.#gone = old;
    if (!old.exited) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([old.ended, new Promise((r) => (timer = setTimeout(r, OLD_EXIT_WAIT_MS)))]);
      clearTimeout(timer);
    }
    let how;
    try {
      how = await old.unmount();
    } catch (e) {
      this.#gone = undefined; // not gone: the next attempt tries again, and its failure names the unmount's
      throw e;
    }
    if (how === "lazily") {
      this.hooks.log(
        `the dead mount at ${old.dir} was still in use: detached lazily (what holds it sees "Transport endpoint is ` +
          `not connected" until it lets go)`,
      );
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, ms);
      this.#wake = () => {
        this.#wake = undefined;
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
