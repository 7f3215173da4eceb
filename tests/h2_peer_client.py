"""python3-h2 (Debian's) as an independent HTTP/2 client of tp's manager, for tests/manager_h2_peers_test.ts.

Usage: python3 tests/h2_peer_client.py PORT TOKEN. Over one connection it sends a normal gRPC-web Version call, then
each malformed request below with h2's own outbound checks turned off, then Version again; it prints one JSON line:
for each exchange, the response status, grpc-status and body length, or the RST_STREAM code, and at the end whether
the connection was still open (no GOAWAY).
"""
import json
import socket
import sys

import h2.config
import h2.connection
import h2.events

port, token = int(sys.argv[1]), sys.argv[2]
VERSION = [(":method", "POST"), (":scheme", "http"), (":path", "/tp.manager.v1.Manager/Version"),
           (":authority", "127.0.0.1"), ("content-type", "application/grpc-web+proto"),
           ("authorization", "Bearer " + token)]
GET = [(":method", "GET"), (":scheme", "http"), (":path", "/healthz"), (":authority", "127.0.0.1")]
MALFORMED = {
    "uppercase field name": GET + [("X-Upper", "1")],
    "connection-specific field": GET + [("connection", "keep-alive")],
    "TE other than trailers": GET + [("te", "gzip")],
    "no :path": [h for h in GET if h[0] != ":path"],
    "empty :path": [(":path", "") if h[0] == ":path" else h for h in GET],
    "pseudo-header after a regular field": [h for h in GET if h[0] != ":authority"] + [("x-a", "1"),
                                                                                        (":authority", "x")],
    "response pseudo-header in a request": GET + [(":status", "200")],
}

config = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                   normalize_outbound_headers=False, validate_inbound_headers=True)
conn = h2.connection.H2Connection(config=config)
sock = socket.create_connection(("127.0.0.1", port), timeout=5)
conn.initiate_connection()
sock.sendall(conn.data_to_send())
results = {}
goaway = None


def exchange(name, headers, body=None):
    global goaway
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, headers, end_stream=body is None)
    if body is not None:
        conn.send_data(sid, body, end_stream=True)
    sock.sendall(conn.data_to_send())
    r = {"status": None, "grpc-status": None, "body": 0}
    while True:
        data = sock.recv(65536)
        if not data:
            r["closed"] = True
            break
        done = False
        for ev in conn.receive_data(data):
            if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)) and ev.stream_id == sid:
                for k, v in ev.headers:
                    k = k.decode() if isinstance(k, bytes) else k
                    v = v.decode() if isinstance(v, bytes) else v
                    if k == ":status":
                        r["status"] = v
                    if k == "grpc-status":
                        r["grpc-status"] = v
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                r["body"] += len(ev.data)
                conn.acknowledge_received_data(ev.flow_controlled_length, sid)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                done = True
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                r["reset"] = ev.error_code.name if hasattr(ev.error_code, "name") else int(ev.error_code)
                done = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                goaway = ev.error_code.name if hasattr(ev.error_code, "name") else int(ev.error_code)
                done = True
        sock.sendall(conn.data_to_send())
        if done:
            break
    results[name] = r


exchange("Version", VERSION, b"\x00\x00\x00\x00\x00")
for name, headers in MALFORMED.items():
    exchange(name, headers)
exchange("Version again", VERSION, b"\x00\x00\x00\x00\x00")
print(json.dumps({"exchanges": results, "goaway": goaway}))
