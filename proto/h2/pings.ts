/**
 * The PINGs this side sent and awaits the ACK of (RFC 9113 section 6.7): each one's 8 bytes of data and when it left,
 * so that the ACK carrying the same bytes gives the round trip. An ACK that matches none is ignored.
 */
import { bytesEqual } from "../../base/bytes.ts";

interface Outstanding {
  data: Uint8Array;
  sent: number;
  resolve: (ms: number) => void;
  reject: (e: Error) => void;
}

export class Pings {
  readonly #outstanding: Outstanding[] = [];

  /** A new PING's data (random), and the round trip in ms once its ACK arrives. */
  start(now: number): { data: Uint8Array; roundTrip: Promise<number> } {
    const data = crypto.getRandomValues(new Uint8Array(8));
    const roundTrip = new Promise<number>((resolve, reject) => {
      this.#outstanding.push({ data, sent: now, resolve, reject });
    });
    return { data, roundTrip };
  }

  /** The peer's ACK with `data`: resolves the PING that sent it, if any. */
  ack(data: Uint8Array, now: number): void {
    const i = this.#outstanding.findIndex((x) => bytesEqual(x.data, data));
    if (i < 0) return;
    const [x] = this.#outstanding.splice(i, 1);
    x!.resolve(now - x!.sent);
  }

  /** The connection ended: every outstanding PING fails with `err`. */
  failAll(err: Error): void {
    for (const p of this.#outstanding.splice(0)) p.reject(err);
  }
}
