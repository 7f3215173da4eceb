/**
 * Following the network while connected in resolv.conf mode: when another program rewrites resolv.conf (a DHCP lease
 * renewal, NetworkManager on a Wi-Fi change, resolvconf), tp takes the new file as the new original, points it at tp
 * again within a second, and tells the daemon the new nameservers (tp's upstreams). `tp quit` then restores the newest
 * original: applyResolvConf() saved it.
 *
 * What is watched (inotify, through Deno.watchFs): the file itself (a write in place, also through a bind mount), the
 * directory that holds it (a new file renamed over it, or a new symlink), and, when resolv.conf is a symlink, the
 * target and the target's directory (NetworkManager and resolvconf replace their file in /run). After a change the
 * watch is set up again if the symlink now points elsewhere or the file was replaced.
 *
 * A change is looked at `settleMs` after its first event, so that a writer's truncate and write are both done. A file
 * that still holds what tp wrote (tp's own write, or a read) is no change. A new file that names tp's own nameserver is
 * someone editing tp's file, not a new network: it is left as it is and not taken as an original (restoring it would
 * leave the machine pointing at a tp that is gone). A program that rewrites the file again and again is not fought:
 * RewriteBackoff says when to stop and when to look again; while backing off, events are not even looked at.
 */
import { applyResolvConf, parseResolvConf, resolvConfHoldsTpsWrite } from "./resolv_conf.ts";
import { RewriteBackoff, type RewriteBackoffOptions } from "./rewrite_backoff.ts";

export interface FollowOptions {
  /** Default /etc/resolv.conf. */
  path?: string;
  stateDir: string;
  dnsAddress: string;
  searchDomains: readonly string[];
  /** The daemon's pid (the change's owner in the record). Default this process. */
  pid?: number;
  log: (line: string, level?: "info" | "warn") => void;
  /** Called with the new original's nameservers each time tp takes one. */
  onNewOriginal: (nameservers: string[]) => void;
  backoff?: RewriteBackoffOptions;
  /** Default 100 ms. */
  settleMs?: number;
}

export interface FollowStatus {
  /** "following": tp re-applies its settings after a rewrite; "backing-off": it leaves the file alone for now. */
  state: "following" | "backing-off";
  /** How many rewrites tp took as a new original. */
  newOriginals: number;
  lastNewOriginalAt: string | null;
  /** How many times tp backed off from a program that kept rewriting the file. */
  backOffs: number;
  backingOffUntil?: string;
  /** The paths watched. */
  watching: string[];
}

/** After a re-apply that failed, when tp looks at the file again by itself. */
const RETRY_AFTER_FAILED_APPLY_MS = 1_000;

const dirname = (p: string) => p.replace(/\/[^/]*$/, "") || "/";

export class ResolvConfFollower {
  readonly #o: FollowOptions;
  readonly #path: string;
  readonly #backoff: RewriteBackoff;
  readonly #settleMs: number;
  #watcher: Deno.FsWatcher | null = null;
  #watching: string[] = [];
  /** The files whose events matter: the path and, for a symlink, its target. */
  #files = new Set<string>();
  #inode: number | null = null;
  readonly #pumps = new Set<Promise<void>>();
  #timer: ReturnType<typeof setTimeout> | null = null;
  #checking: Promise<void> | null = null;
  #again = false;
  #closed = false;
  #newOriginals = 0;
  #lastNewOriginalAt: string | null = null;
  #lastLeftAlone: string | null = null;

  private constructor(o: FollowOptions) {
    this.#o = o;
    this.#path = o.path ?? "/etc/resolv.conf";
    this.#backoff = new RewriteBackoff(o.backoff);
    this.#settleMs = o.settleMs ?? 100;
  }

  /** Starts watching. Throws when the file cannot be watched at all (the daemon logs it and carries on). */
  static start(o: FollowOptions): ResolvConfFollower {
    const f = new ResolvConfFollower(o);
    f.#arm();
    return f;
  }

  status(): FollowStatus {
    const until = this.#backoff.backingOffUntil(performance.now());
    return {
      state: until === null ? "following" : "backing-off",
      newOriginals: this.#newOriginals,
      lastNewOriginalAt: this.#lastNewOriginalAt,
      backOffs: this.#backoff.backOffs,
      ...(until === null ? {} : { backingOffUntil: new Date(Date.now() + until - performance.now()).toISOString() }),
      watching: this.#watching,
    };
  }

  /** Stops watching; waits for a check under way (so the daemon's restore comes after it). */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#watcher?.close();
    this.#watcher = null;
    await this.#checking;
    await Promise.all([...this.#pumps]);
  }

  /** (Re)creates the watch when what resolv.conf is (its symlink target, its inode) has changed. */
  #arm(): void {
    const path = this.#path;
    let real = path;
    try {
      real = Deno.realPathSync(path);
    } catch { /* gone for now: its directory is still watched */ }
    let inode: number | null = null;
    try {
      inode = Deno.statSync(real).ino;
    } catch { /* gone */ }
    const targets = [...new Set([real, dirname(path), dirname(real)])].filter((p) => {
      try {
        Deno.statSync(p);
        return true;
      } catch {
        return false;
      }
    });
    if (this.#watcher && inode === this.#inode && targets.join("\n") === this.#watching.join("\n")) return;
    this.#watcher?.close();
    this.#watcher = Deno.watchFs(targets, { recursive: false });
    this.#watching = targets;
    this.#files = new Set([path, real]);
    this.#inode = inode;
    const pump: Promise<void> = this.#pump(this.#watcher).finally(() => this.#pumps.delete(pump));
    this.#pumps.add(pump);
  }

  async #pump(watcher: Deno.FsWatcher): Promise<void> {
    try {
      for await (const ev of watcher) {
        // Every lookup opens and reads the file ("access"): only changes count.
        if (ev.kind === "access" || !ev.paths.some((p) => this.#files.has(p))) continue;
        this.#schedule(this.#settleMs);
      }
    } catch (e) {
      if (!this.#closed && watcher === this.#watcher) {
        this.#o.log(`cannot watch ${this.#path} any more (${(e as Error).message}); tp stops following it`, "warn");
      }
    }
  }

  #schedule(ms: number): void {
    if (this.#closed || this.#timer !== null) return;
    if (this.#backoff.backingOffUntil(performance.now()) !== null) return; // its own timer looks again at the end
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#check();
    }, ms);
  }

  #check(): void {
    if (this.#checking) {
      this.#again = true;
      return;
    }
    this.#checking = (async () => {
      do {
        this.#again = false;
        try {
          await this.#look();
        } catch (e) {
          this.#o.log(`cannot follow a change of ${this.#path}: ${(e as Error).message}`, "warn");
        }
      } while (this.#again && !this.#closed);
    })().finally(() => (this.#checking = null));
  }

  async #look(): Promise<void> {
    if (this.#closed) return;
    this.#arm();
    const paths = { path: this.#path, stateDir: this.#o.stateDir };
    // No record (null) is not "nothing to follow": the follower runs only while tp manages the file, and a re-apply
    // that another program's write cut short (its read-back failed) leaves the program's file and no record. The
    // file is then the program's, like any rewrite: looked at below, and counted towards backing off.
    if (await resolvConfHoldsTpsWrite(paths) === true) return;
    const text = await Deno.readTextFile(this.#path);
    const nameservers = parseResolvConf(text).nameservers;
    if (nameservers.includes(this.#o.dnsAddress)) {
      if (this.#lastLeftAlone !== text) {
        this.#o.log(
          `${this.#path} was changed by another program but still names tp's nameserver ${this.#o.dnsAddress}: ` +
            `left as it is`,
        );
      }
      this.#lastLeftAlone = text;
      return;
    }
    const now = performance.now();
    const d = this.#backoff.rewritten(now);
    if (d.action === "wait") return this.#lookAt(d.untilMs - now);
    if (d.action === "back-off") {
      this.#o.log(
        `${this.#path} was rewritten by another program again and again (tp re-applied its settings ` +
          `${d.reapplies} times within ${d.windowMs / 1000} s): tp backs off for ${
            Math.round((d.untilMs - now) / 1000)
          } s and leaves the file to that program (nameservers ${nameservers.join(", ") || "none"}); cluster ` +
          `names do not resolve meanwhile`,
        "warn",
      );
      return this.#lookAt(d.untilMs - now);
    }
    let r: Awaited<ReturnType<typeof applyResolvConf>>;
    try {
      r = await applyResolvConf(paths, {
        dnsAddress: this.#o.dnsAddress,
        searchDomains: this.#o.searchDomains,
        pid: this.#o.pid ?? Deno.pid,
      });
    } catch (e) {
      // The file is the program's again (applyResolvConf put it back): a program that wrote once, in the middle of
      // tp's write, writes no more, so tp looks once more itself. RewriteBackoff bounds how often.
      this.#lookAt(RETRY_AFTER_FAILED_APPLY_MS);
      throw e;
    }
    this.#newOriginals++;
    this.#lastNewOriginalAt = new Date().toISOString();
    this.#o.onNewOriginal(r.upstreams);
    this.#o.log(
      `${this.#path} was rewritten by another program (nameservers ${r.upstreams.join(", ") || "none"}): tp took ` +
        `it as the new original and pointed it at tp again; tp quit restores it`,
    );
  }

  /** Looks again when a back-off ends. */
  #lookAt(ms: number): void {
    if (this.#closed) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#check();
    }, Math.max(0, ms));
  }
}
