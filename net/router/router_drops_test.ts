import assert from "node:assert/strict";
import { checksum, pseudoHeaderSumV4 } from "../wire/checksum.ts";
import { ACK, APP_ISN, Harness, pattern, RST, settle, SYN } from "./_harness.ts";

function write16(p: Uint8Array, o: number, v: number): void {
  p[o] = v >> 8;
  p[o + 1] = v & 0xff;
}

/** Rewrites the IPv4 header checksum after a test changed header bytes. */
function fixIpv4Checksum(p: Uint8Array): Uint8Array {
  write16(p, 10, 0);
  write16(p, 10, checksum(p, 0, 20));
  return p;
}

Deno.test("Router drops a malformed packet of each kind and counts it by name", async () => {
  const h = new Harness();
  try {
    const good = () => h.tcpPacket({ seq: APP_ISN, flags: SYN });
    const cases: Record<string, Uint8Array> = {
      truncated: good().subarray(0, 10),
      badVersion: (() => {
        const p = good();
        p[0] = 0x55;
        return p;
      })(),
      badHeaderLength: fixIpv4Checksum((() => {
        const p = good();
        p[0] = 0x44;
        return p;
      })()),
      badLength: fixIpv4Checksum((() => {
        const p = good();
        p[2] = 0;
        p[3] = 8;
        return p;
      })()),
      badChecksum: (() => {
        const p = good();
        p[p.length - 1]! ^= 0xff;
        p[38] = 0x12; // the TCP checksum field
        return p;
      })(),
      fragment: fixIpv4Checksum((() => {
        const p = good();
        p[6] = 0x20; // more fragments
        return p;
      })()),
      badExtensionHeader: (() => {
        const p = h.tcpPacket({ seq: APP_ISN, flags: SYN }, { family: 6 });
        // A destination-options header (8 bytes, over the TCP ports) followed by hop-by-hop, which must be first.
        p[6] = 60;
        p[40] = 0;
        p[41] = 0;
        return p;
      })(),
      unsupportedProtocol: fixIpv4Checksum((() => {
        const p = good();
        p[9] = 47; // GRE
        return p;
      })()),
      multicastOrBroadcast: (() => {
        const p = h.tcpPacket({ seq: APP_ISN, flags: SYN });
        p[16] = 224;
        p[17] = 0;
        p[18] = 0;
        p[19] = 1;
        // Rebuild both checksums: the destination is in the pseudo-header too.
        return rebuilt(p);
      })(),
    };
    for (const p of Object.values(cases)) h.tun.inject(p);
    await settle();
    const drops = h.router.stats().drops;
    for (const name of Object.keys(cases)) assert.equal(drops[name], 1, `drops.${name}: ${JSON.stringify(drops)}`);
    assert.equal(Object.values(drops).reduce((a, b) => a + b, 0), Object.keys(cases).length);
    assert.equal(h.owner.sockets.length, 0);
    assert.deepEqual(await h.drain(), [], "no answer to a malformed packet");
    assert.deepEqual(h.errors, []);
  } finally {
    await h.close();
  }
});

/** Re-encodes a TCP/IPv4 packet after its addresses changed (both checksums). */
function rebuilt(p: Uint8Array): Uint8Array {
  fixIpv4Checksum(p);
  write16(p, 36, 0);
  const v = new DataView(p.buffer, p.byteOffset);
  write16(p, 36, checksum(p, 20, p.length, pseudoHeaderSumV4(v.getUint32(12), v.getUint32(16), 6, p.length - 20)));
  return p;
}

Deno.test("Router answers a segment that matches no connection with an RST, counted", async () => {
  const h = new Harness();
  try {
    h.sendTcp({ seq: 5, ack: 77, flags: ACK, payload: pattern(10) });
    const [rst] = await h.recv();
    assert.equal(rst!.tcp!.flags, RST);
    assert.equal(rst!.tcp!.seq, 77);
    h.sendTcp({ seq: 5, flags: RST });
    await settle();
    assert.deepEqual(await h.drain(), [], "an RST is never answered");
    assert.equal(h.router.stats().drops["tcpNoConnection"], 2);
  } finally {
    await h.close();
  }
});

Deno.test("Router ignores ICMP from the app, counted", async () => {
  const h = new Harness();
  try {
    await h.advance(0); // sends an ICMP echo request
    assert.equal(h.router.stats().drops["icmpIgnored"], 1);
    assert.deepEqual(await h.drain(), []);
  } finally {
    await h.close();
  }
});
