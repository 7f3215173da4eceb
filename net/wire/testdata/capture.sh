#!/usr/bin/env bash
# Note: lo offloads checksums (CHECKSUM_PARTIAL, fixed on), so captured TCP and UDP packets carry the folded
# pseudo-header sum in their checksum field, exactly what a TUN with IFF_VNET_HDR hands over with NEEDS_CSUM.
# IPv4 header and ICMP checksums are complete.
# Records the packets in net/wire/testdata/captured.ts: real kernel traffic on `lo` (and one TUN-less loss run)
# inside a throwaway network namespace, captured with tshark, converted to a TypeScript module of hex strings.
# Run as root from the repo root: bash net/wire/testdata/capture.sh > net/wire/testdata/captured.ts
# Only 198.18.0.0/15 and ::1 are used; the namespace and every process started here are removed on exit.
set -euo pipefail
NS="tpt-wire-$$"
DIR="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
ip netns add "$NS"
inns() { ip netns exec "$NS" "$@"; }
inns ip link set lo up
inns ip link set lo mtu 1500
inns ip addr add 198.18.0.1/32 dev lo
chmod 777 "$DIR"

capture() { # name filter -- command...
  local name="$1" filter="$2"; shift 3
  ip netns exec "$NS" tshark -q -F pcap -i lo -f "$filter" -w "$DIR/$name.pcap" >/dev/null 2>&1 &
  local tp=$!
  sleep 3
  "$@" >/dev/null 2>&1 || true
  sleep 0.7
  kill -INT "$tp"; wait "$tp" || true
}

# TCP over IPv4 and IPv6: handshake with Linux's SYN options, an HTTP request, FIN.
printf 'HTTP/1.0 200 OK\r\n\r\nhi' > "$DIR/response"
ip netns exec "$NS" socat TCP4-LISTEN:8080,bind=198.18.0.1,reuseaddr,fork OPEN:"$DIR/response" &
PIDS+=($!)
ip netns exec "$NS" socat TCP6-LISTEN:8080,bind=[::1],reuseaddr,fork OPEN:"$DIR/response" &
PIDS+=($!)
sleep 0.5
capture tcp4 "tcp port 8080" -- inns curl -s -o /dev/null http://198.18.0.1:8080/
capture tcp6 "tcp port 8080" -- inns curl -s -o /dev/null "http://[::1]:8080/"

# UDP to a closed port: the query and the kernel's ICMP / ICMPv6 port unreachable quoting it.
capture udp4 "udp or icmp" -- inns dig +tries=1 +time=1 +noedns @198.18.0.1 -p 5999 tp.example A
capture udp6 "udp or icmp6" -- inns dig +tries=1 +time=1 +noedns @::1 -p 5999 tp.example AAAA

# Echo request/reply (no ping here: raw sockets), IPv4 options, IPv6 extension headers, fragments.
capture special "ip or ip6" -- inns python3 - <<'PY'
import socket, struct, time
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
# ICMPv4 echo request (the kernel answers with the reply)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
body = struct.pack("!HH", 0x7470, 1) + b"tp-wire-echo"
s.sendto(struct.pack("!BBH", 8, 0, csum(struct.pack("!BBH", 8, 0, 0) + body)) + body, ("198.18.0.1", 0))
time.sleep(0.2)
# ICMPv6 echo request (the kernel fills the checksum of raw ICMPv6 sockets)
s6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s6.sendto(struct.pack("!BBHHH", 128, 0, 0, 0x7470, 1) + b"tp-wire-echo6", ("::1", 0))
time.sleep(0.2)
# IPv4 with a record-route option (12 bytes of options: RR of 3 slots + EOL)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, bytes([7, 11, 4] + [0] * 8 + [0]))
u.sendto(b"ipv4-options", ("198.18.0.1", 6001))
time.sleep(0.2)
# IPv6 with a hop-by-hop header (PadN) and a destination-options header (PadN)
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
IPV6_HOPOPTS, IPV6_DSTOPTS = 54, 59
u6.setsockopt(socket.IPPROTO_IPV6, IPV6_HOPOPTS, bytes([0, 0, 1, 4, 0, 0, 0, 0]))
u6.setsockopt(socket.IPPROTO_IPV6, IPV6_DSTOPTS, bytes([0, 0, 1, 4, 0, 0, 0, 0]))
u6.sendto(b"ipv6-ext-headers", ("::1", 6002))
time.sleep(0.2)
# Fragmented datagrams (lo MTU is 1500 in this namespace)
u.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, b"")
u.sendto(bytes(range(256)) * 8, ("198.18.0.1", 6003))
v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
v6.sendto(bytes(range(256)) * 8, ("::1", 6004))
time.sleep(0.2)
PY

# SACK blocks: a bulk transfer on lo with 3 % of data segments dropped by nftables, so the receiver reports SACKs.
inns nft -f - <<'NFT'
table ip tptwire {
  chain out {
    type filter hook output priority 0;
    tcp sport 8081 meta length > 1000 numgen random mod 100 < 3 drop
  }
}
NFT
ip netns exec "$NS" socat -u OPEN:/dev/zero TCP4-LISTEN:8081,bind=198.18.0.1,reuseaddr &
PIDS+=($!)
sleep 0.3
capture sack "tcp dst port 8081" -- inns timeout 1 socat -u TCP4:198.18.0.1:8081 OPEN:/dev/null

python3 - "$DIR" <<'PY'
import struct, sys, os
d = sys.argv[1]
def frames(path):
    data = open(path, "rb").read()
    magic, = struct.unpack("<I", data[:4])
    assert magic == 0xa1b2c3d4, hex(magic)
    link, = struct.unpack("<I", data[20:24])
    off, out = 24, []
    while off < len(data):
        _, _, incl, _ = struct.unpack("<IIII", data[off:off + 16])
        pkt = data[off + 16:off + 16 + incl]
        off += 16 + incl
        out.append(pkt[14:] if link == 1 else pkt)
    return out
print("// Generated by net/wire/testdata/capture.sh from tshark captures on lo in a network namespace. Do not edit.")
print("// Each entry is one IP packet (link header removed) as hex.")
print()
for name in ["tcp4", "tcp6", "udp4", "udp6", "special", "sack"]:
    pkts = frames(os.path.join(d, name + ".pcap"))
    if name == "sack":
        # keep the first segment with a SACK option (kind 5)
        pkts = [p for p in pkts if b"\x01\x01\x05" in p[20:60]][:1]
    print("export const %s: readonly string[] = [" % name)
    for p in pkts:
        print('  "%s",' % p.hex())
    print("];")
    print()
PY
