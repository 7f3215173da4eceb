/**
 * Sessions: who is connected, and which streams each one holds. Sans-IO: every method takes the current time, and
 * the manager's driver calls `expire(now)` from its timer. Ending a session aborts its streams.
 */

import { SessionBuffer } from "./session_buffer.ts";

/** Something a session holds open (a tunnel or a watch) that ends when the session does. */
export interface SessionStream {
  abort(reason: string): void;
}

/** A workstation (tp connect) or a traffic-agent (tp agent): each may call only its own methods. */
export type SessionKind = "client" | "agent";

export interface Session {
  /** The session's secret: whoever holds it acts as the session. Never logged. */
  readonly id: string;
  /** What logs say instead of the id: random too, and worthless to whoever reads it. */
  readonly tag: string;
  readonly kind: SessionKind;
  readonly clientName: string;
  readonly namespace: string;
  readonly arrivedAt: number;
  lastSeen: number;
  readonly streams: Set<SessionStream>;
  /** The bytes the manager holds for the session's streams, against its budget (`session_buffer.ts`). */
  readonly buffer: SessionBuffer;
}

export type EndReason = "departed" | "expired" | "shutdown";

export class Sessions {
  readonly #byId = new Map<string, Session>();
  /** Called after a session ended, with its streams aborted. */
  onEnd: (s: Session, reason: EndReason) => void = () => {};

  /**
   * `newBuffer` makes each session's buffer budget (given the session's log tag); by default the budget is
   * unlimited.
   */
  constructor(
    readonly ttlMs: number,
    readonly maxSessions: number,
    readonly newBuffer: (tag: string) => SessionBuffer = () => new SessionBuffer(Infinity),
  ) {}

  /** The open sessions. */
  values(): IterableIterator<Session> {
    return this.#byId.values();
  }

  get size(): number {
    return this.#byId.size;
  }

  get streamCount(): number {
    let n = 0;
    for (const s of this.#byId.values()) n += s.streams.size;
    return n;
  }

  /** Starts a session, or returns undefined when maxSessions are open. */
  arrive(clientName: string, namespace: string, now: number, kind: SessionKind = "client"): Session | undefined {
    if (this.#byId.size >= this.maxSessions) return undefined;
    const tag = crypto.randomUUID().slice(0, 8);
    const s: Session = {
      id: crypto.randomUUID(),
      tag,
      kind,
      clientName,
      namespace,
      arrivedAt: now,
      lastSeen: now,
      streams: new Set(),
      buffer: this.newBuffer(tag),
    };
    this.#byId.set(s.id, s);
    return s;
  }

  get(id: string): Session | undefined {
    return this.#byId.get(id);
  }

  /** Records a sign of life; false when the session is unknown (never existed, departed or expired). */
  touch(id: string, now: number): boolean {
    const s = this.#byId.get(id);
    if (!s) return false;
    s.lastSeen = now;
    return true;
  }

  /** Ends one session and aborts its streams. */
  end(id: string, reason: EndReason): Session | undefined {
    const s = this.#byId.get(id);
    if (!s) return undefined;
    this.#byId.delete(id);
    for (const st of [...s.streams]) st.abort(`session ${reason}`);
    s.streams.clear();
    this.onEnd(s, reason);
    return s;
  }

  /** Ends every session whose last sign of life is older than the ttl, and returns them. */
  expire(now: number): Session[] {
    const out: Session[] = [];
    for (const s of [...this.#byId.values()]) {
      if (now - s.lastSeen > this.ttlMs) {
        this.end(s.id, "expired");
        out.push(s);
      }
    }
    return out;
  }

  endAll(reason: EndReason): Session[] {
    return [...this.#byId.keys()].map((id) => this.end(id, reason)!);
  }
}
