/**
 * tp's DNS resolver: one query in, one answer out. Cluster names go to the cluster forwarder (the manager's raw-DNS
 * call), every other name to the upstream forwarder (the workstation's original nameservers), answers are cached,
 * and every well-formed query gets an answer: a forwarder that fails or does not answer within `timeoutMs` gives
 * SERVFAIL, never silence. A malformed query is dropped and counted.
 *
 * It holds no sockets: the forwarders are passed in, and the caller owns the transport. Over UDP pass
 * `{ transport: "udp" }` (the default) and the answer is cut to the client's size with TC set when it is larger
 * (RFC 1035 section 4.2.1, RFC 6891 section 6.2.5); over TCP pass `"tcp"` and frame it with `tcp_framing.ts`.
 */
import { cacheKeyParts, DnsCache, type DnsCacheOptions } from "./cache.ts";
import {
  emptyAnswer,
  encodeName,
  Flags,
  HEADER_LEN,
  type MessageInfo,
  Opcode,
  Rcode,
  scanMessage,
  setU16,
  TCP_LIMIT,
  truncateAnswer,
  udpLimit,
} from "./message.ts";
import { NameRouter, type NameRoutingOptions } from "./name_routing.ts";
import { renameMessage } from "./rewrite.ts";

/**
 * Sends one DNS query (wire format) and resolves with the raw answer. It should stop when `signal` aborts; the
 * resolver stops waiting for it then anyway. The id of the answer does not matter.
 */
export type Forwarder = (query: Uint8Array, signal: AbortSignal) => Promise<Uint8Array>;

export interface ResolverOptions {
  /** Which names go to the cluster: a router, or the options to build one. */
  routing: NameRouter | NameRoutingOptions;
  /** Asks the cluster's DNS (the manager's raw-DNS call). */
  cluster: Forwarder;
  /** Asks the workstation's original nameservers. */
  upstream: Forwarder;
  /**
   * How long one query may take in all, forwarding and fallback included, before it is answered SERVFAIL
   * (milliseconds). Default 4,000: under glibc's 5 s default retransmit timeout (resolv.conf(5) `timeout:`), so the
   * client hears SERVFAIL before it gives up on tp.
   */
  timeoutMs?: number;
  cache?: DnsCacheOptions;
  /**
   * Ask upstream, unchanged, when the cluster has no such name for a rewritten short name; the upstream answer is
   * used if it is NOERROR, else the cluster's NXDOMAIN is. Default true.
   */
  fallbackToUpstream?: boolean;
}

/** What `tp status` shows. Plain numbers, updated in place. */
export interface DnsCounters {
  /** Every message given to `resolve()`, malformed ones included. */
  queries: number;
  /** Lookups sent to the cluster forwarder. */
  cluster: number;
  /** Lookups sent to the upstream forwarder (fallbacks included). */
  upstream: number;
  cacheHits: number;
  cacheMisses: number;
  /** SERVFAIL answers sent, made by tp (timeouts, forwarder errors) or relayed. */
  servfail: number;
  /** Lookups that hit `timeoutMs`. */
  timeouts: number;
  /** Queries dropped because they could not be parsed (or were answers). */
  malformed: number;
  /** UDP answers cut down with TC set. */
  truncated: number;
  /** Forwarder calls that failed or returned an answer that does not parse or does not match the question. */
  forwardErrors: number;
}

export interface ResolveOptions {
  /** How the answer travels back: "udp" truncates to the client's limit, "tcp" to 65,535 bytes. Default "udp". */
  transport?: "udp" | "tcp";
}

interface Answer {
  bytes: Uint8Array;
  info: MessageInfo;
}

const SERVFAIL = Symbol("servfail");
type Outcome = Answer | typeof SERVFAIL;

export class Resolver {
  readonly router: NameRouter;
  readonly counters: DnsCounters = {
    queries: 0,
    cluster: 0,
    upstream: 0,
    cacheHits: 0,
    cacheMisses: 0,
    servfail: 0,
    timeouts: 0,
    malformed: 0,
    truncated: 0,
    forwardErrors: 0,
  };
  readonly cache: DnsCache;
  #cluster: Forwarder;
  #upstream: Forwarder;
  #timeoutMs: number;
  #fallback: boolean;
  /** Identical lookups in flight share one forward (keyed like the cache). */
  #inflight = new Map<string, Promise<Outcome>>();
  #aborts = new Set<AbortController>();
  #closed = false;

  constructor(options: ResolverOptions) {
    this.router = options.routing instanceof NameRouter ? options.routing : new NameRouter(options.routing);
    this.#cluster = options.cluster;
    this.#upstream = options.upstream;
    this.#timeoutMs = options.timeoutMs ?? 4_000;
    if (!(this.#timeoutMs > 0)) throw new RangeError(`DNS timeout must be positive, got ${options.timeoutMs}`);
    this.#fallback = options.fallbackToUpstream ?? true;
    this.cache = new DnsCache(options.cache);
  }

  /**
   * Answers one query. `now` is the time in milliseconds (any monotonic origin; it only ages the cache). Resolves
   * with the answer, or null when the query is dropped (malformed, or not a query); never rejects.
   */
  async resolve(query: Uint8Array, now: number, options: ResolveOptions = {}): Promise<Uint8Array | null> {
    this.counters.queries++;
    const info = scanMessage(query);
    if (!info || (info.flags & Flags.QR) !== 0) {
      this.counters.malformed++;
      return null;
    }
    if (info.opcode !== Opcode.QUERY) return this.#send(emptyAnswer(query, info, Rcode.NOTIMP));
    if (info.qdcount !== 1) return this.#send(emptyAnswer(query, info, Rcode.FORMERR));
    const limit = options.transport === "tcp" ? TCP_LIMIT : udpLimit(info);
    const parts = cacheKeyParts(info)!;
    const hit = this.cache.get(parts, now);
    if (hit) {
      this.counters.cacheHits++;
      return this.#finish(query, info, hit.answer, hit.info, limit);
    }
    this.counters.cacheMisses++;
    const key = `${parts.name}|${parts.type}|${parts.class}|${parts.edns}|${parts.dnssecOk}|${parts.checkingDisabled}`;
    let pending = this.#inflight.get(key);
    if (!pending) {
      pending = this.#lookup(query, info, now).finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    const outcome = await pending;
    if (outcome === SERVFAIL) return this.#send(emptyAnswer(query, info, Rcode.SERVFAIL));
    return this.#finish(query, info, outcome.bytes.slice(), outcome.info, limit);
  }

  /** Stops every lookup in flight (they answer SERVFAIL) and refuses new forwards. */
  close(): void {
    this.#closed = true;
    for (const ac of this.#aborts) ac.abort();
  }

  /** The answer for this client: its id, its question's letter case, cut to its size. */
  #finish(query: Uint8Array, qInfo: MessageInfo, answer: Uint8Array, aInfo: MessageInfo, limit: number): Uint8Array {
    setU16(answer, 0, qInfo.id);
    const q = qInfo.question!;
    const a = aInfo.question;
    if (a && a.end - a.start === q.end - q.start) answer.set(query.subarray(q.start, q.end - 4), HEADER_LEN);
    if (answer.length > limit) {
      this.counters.truncated++;
      answer = truncateAnswer(answer, aInfo, limit);
    }
    return this.#send(answer);
  }

  #send(answer: Uint8Array): Uint8Array {
    if ((answer[3]! & 0x0f) === Rcode.SERVFAIL) this.counters.servfail++;
    return answer;
  }

  async #lookup(query: Uint8Array, info: MessageInfo, now: number): Promise<Outcome> {
    if (this.#closed) return SERVFAIL;
    const q = info.question!;
    const ac = new AbortController();
    this.#aborts.add(ac);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => {
        resolve("timeout");
        ac.abort();
      }, this.#timeoutMs);
    });
    // close() aborts without the timer: that too ends the lookup.
    const aborted = new Promise<"timeout">((resolve) => ac.signal.addEventListener("abort", () => resolve("timeout")));
    const ask = async (fwd: Forwarder, sent: Uint8Array, name: string): Promise<Answer | "error" | "timeout"> => {
      const r = await Promise.race([
        fwd(sent, ac.signal).then((a) => ({ a }), () => "error" as const),
        deadline,
        aborted,
      ]);
      if (r === "timeout" || r === "error") return r;
      // A plain Uint8Array of our own: a forwarder may hand back a Node Buffer (protobufjs does), whose slice()
      // is a view, not a copy, and the answers below are copied with slice() before each client's id goes in.
      r.a = new Uint8Array(r.a);
      const aInfo = scanMessage(r.a);
      const aq = aInfo?.question;
      if (!aInfo || (aInfo.flags & Flags.QR) === 0 || !aq || aq.name !== name || aq.type !== q.type) return "error";
      return { bytes: r.a, info: aInfo };
    };
    try {
      const route = this.router.route(q.name);
      let result: Answer | "error" | "timeout";
      if (route.to === "cluster") {
        this.counters.cluster++;
        let sent = query;
        let to: Uint8Array | null = null;
        if (route.rewritten) {
          try {
            to = encodeName(route.name);
          } catch {
            to = null; // the long form is over 255 bytes: no cluster name can match it
          }
          const qWire = to && new Uint8Array(to.length + 4);
          if (qWire && to) {
            qWire.set(to);
            qWire.set(query.subarray(q.end - 4, q.end), to.length);
          }
          const renamed = qWire && to && renameMessage(query, info, { question: qWire, from: q.name, to });
          if (!renamed) return await this.#upstreamOnly(ask, query, q.name, info, now);
          sent = renamed;
        }
        result = await ask(this.#cluster, sent, route.name);
        if (typeof result !== "string" && to) {
          const back = renameMessage(result.bytes, result.info, {
            question: query.subarray(q.start, q.end),
            from: route.name,
            to: query.subarray(q.start, q.end - 4),
          });
          const backInfo = back && scanMessage(back);
          result = back && backInfo ? { bytes: back, info: backInfo } : "error";
          if (this.#fallback && typeof result !== "string" && result.info.rcode === Rcode.NXDOMAIN) {
            // The upstream answer wins only if the name exists there; otherwise the cluster's NXDOMAIN stands
            // (an upstream REFUSED or SERVFAIL for a name nobody has would be a worse answer).
            this.counters.upstream++;
            const up = await ask(this.#upstream, query, q.name);
            if (typeof up !== "string" && up.info.rcode === Rcode.NOERROR) result = up;
          }
        }
      } else {
        return await this.#upstreamOnly(ask, query, q.name, info, now);
      }
      return this.#settle(result, info, now);
    } finally {
      clearTimeout(timer);
      this.#aborts.delete(ac);
    }
  }

  async #upstreamOnly(
    ask: (fwd: Forwarder, sent: Uint8Array, name: string) => Promise<Answer | "error" | "timeout">,
    query: Uint8Array,
    name: string,
    info: MessageInfo,
    now: number,
  ): Promise<Outcome> {
    this.counters.upstream++;
    return this.#settle(await ask(this.#upstream, query, name), info, now);
  }

  #settle(result: Answer | "error" | "timeout", info: MessageInfo, now: number): Outcome {
    if (result === "timeout") {
      this.counters.timeouts++;
      return SERVFAIL;
    }
    if (result === "error") {
      this.counters.forwardErrors++;
      return SERVFAIL;
    }
    this.cache.put(cacheKeyParts(info)!, result.bytes, result.info, now);
    return result;
  }
}
