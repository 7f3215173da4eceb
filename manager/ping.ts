/**
 * The Ping method: ICMP echo to cluster addresses from the manager's unprivileged ICMP sockets (`ffi/icmp_socket.ts`).
 * Bounded: at most MAX_PENDING echoes wait at once (MAX_PENDING_PER_SESSION per session), each for at most
 * MAX_TIMEOUT_MS; an echo past a bound is not sent and answers "no reply", as a full queue on a network would.
 * Where the kernel refuses the manager ICMP sockets, the manager says so once in its log and in every answer.
 */
import { IcmpPinger, MAX_ECHO_DATA } from "../ffi/icmp_socket.ts";
import { OsError } from "../ffi/errors.ts";
import { GrpcError, Status } from "../proto/grpc_web.ts";
import type { PingRequest, PingResponse } from "../proto/messages.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";

export const MAX_PENDING = 1024;
export const MAX_PENDING_PER_SESSION = 64;
export const DEFAULT_TIMEOUT_MS = 2_000;
export const MAX_TIMEOUT_MS = 5_000;

export interface PingHost {
  logger: Logger;
  metrics: Metrics;
  allows(ip: string): boolean;
  /** Makes the pinger on first use (tests pass one of their own). */
  pinger?: () => Pick<IcmpPinger, "echo" | "close">;
}

export class PingService {
  readonly #host: PingHost;
  #pinger: Pick<IcmpPinger, "echo" | "close"> | undefined;
  readonly #bySession = new Map<string, number>();
  #pending = 0;
  #closed = false;
  /** Why ICMP echo cannot be sent, by family, once the kernel said so. */
  readonly #unavailable = new Map<string, string>();

  constructor(host: PingHost) {
    this.#host = host;
  }

  /** Why the manager cannot send ICMP echo ("" when it can, or has not tried). */
  get unavailable(): string {
    return [...this.#unavailable.values()].join("; ");
  }

  async ping(sessionId: string, req: PingRequest): Promise<PingResponse> {
    const { metrics } = this.#host;
    const none = (outcome: string, unavailable = ""): PingResponse => {
      metrics.pings.add({ outcome }, 1);
      return { replied: false, data: new Uint8Array(), unavailable };
    };
    if (!this.#host.allows(req.destination)) {
      throw new GrpcError(Status.PERMISSION_DENIED, "The destination is outside the allowed destinations");
    }
    if (req.data.length > MAX_ECHO_DATA) throw new GrpcError(Status.INVALID_ARGUMENT, "Echo data too long");
    const family = req.destination.includes(":") ? "ICMPv6" : "ICMP";
    if (this.#closed) throw new GrpcError(Status.UNAVAILABLE, "The manager is shutting down");
    const known = this.#unavailable.get(family);
    if (known) return none("unavailable", known);
    const mine = this.#bySession.get(sessionId) ?? 0;
    if (this.#pending >= MAX_PENDING || mine >= MAX_PENDING_PER_SESSION) return none("limit");
    const timeout = Math.min(MAX_TIMEOUT_MS, Math.max(1, req.timeoutMs || DEFAULT_TIMEOUT_MS));
    this.#pending++;
    this.#bySession.set(sessionId, mine + 1);
    try {
      this.#pinger ??= this.#host.pinger?.() ?? new IcmpPinger();
      const reply = await this.#pinger.echo(req.destination, req.data, timeout);
      if (reply === null) return none("timeout");
      metrics.pings.add({ outcome: "replied" }, 1);
      return { replied: true, data: reply, unavailable: "" };
    } catch (e) {
      if (!(e instanceof OsError)) throw new GrpcError(Status.INVALID_ARGUMENT, (e as Error).message);
      this.#unavailable.set(family, e.message);
      this.#host.logger.warn("ICMP echo unavailable", { family, reason: e.message });
      return none("unavailable", e.message);
    } finally {
      this.#pending--;
      const left = (this.#bySession.get(sessionId) ?? 1) - 1;
      if (left > 0) this.#bySession.set(sessionId, left);
      else this.#bySession.delete(sessionId);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    const p = this.#pinger;
    this.#pinger = undefined;
    await p?.close();
  }
}
