/**
 * The machine's own nameservers, which answer every name that is not the cluster's: a forwarder the resolver calls,
 * whose servers change when the network does (a new resolv.conf, ResolvConfFollower). A replaced forwarder is closed
 * a little later, so that queries it is answering finish.
 */
import { type NameserverForwarder, nameserverForwarder } from "../dns/mod.ts";
import type { Forwarder } from "../../net/dns/resolver.ts";

/** How long a replaced forwarder keeps its sockets for the queries in flight (longer than two 2 s attempts). */
const RETIRE_MS = 10_000;

export class Upstreams {
  #list: string[] = [];
  #forwarder: NameserverForwarder | null = null;
  readonly #exclude: string;
  readonly #retiring = new Map<NameserverForwarder, ReturnType<typeof setTimeout>>();

  /** `exclude`: tp's own DNS address, never an upstream (a file naming it would send tp's queries to itself). */
  constructor(nameservers: readonly string[], options: { exclude: string }) {
    this.#exclude = options.exclude;
    this.#list = this.#usable(nameservers);
    this.#forwarder = this.#list.length ? nameserverForwarder(this.#list.map((ip) => ({ ip }))) : null;
  }

  get list(): string[] {
    return [...this.#list];
  }

  /** The resolver's upstream: the current nameservers, or an error when the machine has none (SERVFAIL). */
  readonly forward: Forwarder = (query, signal) =>
    this.#forwarder ? this.#forwarder(query, signal) : Promise.reject(new Error("this machine has no nameserver"));

  /** Switches to these nameservers; false when they are the ones in use already. */
  set(nameservers: readonly string[]): boolean {
    const list = this.#usable(nameservers);
    if (list.join() === this.#list.join()) return false;
    const old = this.#forwarder;
    this.#list = list;
    this.#forwarder = list.length ? nameserverForwarder(list.map((ip) => ({ ip }))) : null;
    if (old) {
      this.#retiring.set(
        old,
        setTimeout(() => {
          this.#retiring.delete(old);
          void old.close();
        }, RETIRE_MS),
      );
    }
    return true;
  }

  #usable(nameservers: readonly string[]): string[] {
    return [...new Set(nameservers)].filter((ip) => ip !== this.#exclude);
  }

  async close(): Promise<void> {
    for (const [f, timer] of this.#retiring) clearTimeout(timer), await f.close();
    this.#retiring.clear();
    await this.#forwarder?.close();
    this.#forwarder = null;
  }
}
