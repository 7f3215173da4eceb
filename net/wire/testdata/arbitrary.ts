// fast-check arbitraries shared by several codec tests.
import fc from "fast-check";
import { tcpHeaderLen } from "../tcp.ts";
import type { TcpRepr } from "../tcp_repr.ts";

const u32 = fc.nat({ max: 0xffffffff });
const u16 = fc.nat({ max: 0xffff });
/** Any TcpRepr whose options fit in 40 bytes; `sackPermitted` is only ever true (false has no wire form). */
export const tcpRepr: fc.Arbitrary<TcpRepr> = fc.record({
  srcPort: u16,
  dstPort: u16,
  seq: u32,
  ack: u32,
  flags: fc.nat({ max: 255 }),
  window: u16,
  urgent: u16,
  mss: u16,
  windowScale: fc.nat({ max: 14 }),
  sackPermitted: fc.constant(true),
  sackBlocks: fc.array(fc.tuple(u32, u32), { minLength: 1, maxLength: 4 }),
  timestamps: fc.tuple(u32, u32),
  payload: fc.uint8Array({ maxLength: 200 }),
}, { requiredKeys: ["srcPort", "dstPort", "seq", "ack", "flags", "window", "urgent", "payload"] })
  .map((r) => ({ ...r }) as TcpRepr)
  .filter((r) => tcpHeaderLen(r) <= 60);
