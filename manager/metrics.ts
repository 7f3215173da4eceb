/**
 * The manager's counters, served at /metrics in the Prometheus text exposition format (version 0.0.4):
 * "# HELP", "# TYPE", then `name{label="value"} number` lines.
 *
 * Direction words: "inbound" is from the workstation towards the cluster, "outbound" the other way.
 */

type Labels = Record<string, string>;

class Family {
  readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(readonly name: string, readonly type: "counter" | "gauge", readonly help: string) {}

  add(labels: Labels, delta: number): void {
    const key = labelKey(labels);
    const v = this.values.get(key);
    if (v) v.value += delta;
    else this.values.set(key, { labels, value: delta });
  }

  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels))?.value ?? 0;
  }
}

/** A map key for a label set, in the order given (callers name labels in one order). Cheaper than JSON. */
function labelKey(labels: Labels): string {
  let k = "";
  for (const name in labels) k += `${name}\u0000${labels[name]}\u0000`;
  return k;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

export class Metrics {
  readonly #families: Family[] = [];
  readonly sessions = this.#family("tp_manager_sessions", "gauge", "Sessions now open.");
  readonly sessionsTotal = this.#family("tp_manager_sessions_total", "counter", "Sessions started.");
  readonly sessionsResumed = this.#family(
    "tp_manager_sessions_resumed_total",
    "counter",
    "Sessions a workstation resumed after its connection broke.",
  );
  readonly sessionsExpired = this.#family("tp_manager_sessions_expired_total", "counter", "Sessions expired.");
  readonly streams = this.#family("tp_manager_streams", "gauge", "Tunnel streams now open, by protocol.");
  readonly streamsTotal = this.#family("tp_manager_streams_total", "counter", "Tunnel streams opened.");
  readonly streamsResumable = this.#family(
    "tp_manager_streams_resumable",
    "gauge",
    "Resumable TCP streams now kept (attached to a call or waiting for their workstation).",
  );
  readonly resumes = this.#family(
    "tp_manager_stream_resumes_total",
    "counter",
    "Streams a workstation asked to resume after a reconnection, by result (resumed, gone).",
  );
  readonly bytes = this.#family(
    "tp_manager_bytes_total",
    "counter",
    "Tunnel payload bytes, by protocol and direction.",
  );
  readonly datagramsDropped = this.#family(
    "tp_manager_datagrams_dropped_total",
    "counter",
    "UDP datagrams dropped, by reason (stream-buffer-full, session-buffer-full, flow-ended, socket-buffer-full, send-error, network-error).",
  );
  readonly dials = this.#family("tp_manager_dials_total", "counter", "Dial results, by protocol and result.");
  readonly interceptConnections = this.#family(
    "tp_manager_intercept_connections_total",
    "counter",
    "Connections agents sent for intercepted ports, by result (joined, not-intercepted, timeout, unreachable).",
  );
  readonly dnsQueries = this.#family("tp_manager_dns_queries_total", "counter", "DNS queries, by outcome.");
  readonly pings = this.#family(
    "tp_manager_pings_total",
    "counter",
    "ICMP echoes, by outcome (replied, timeout, limit, unavailable).",
  );
  readonly requests = this.#family("tp_manager_requests_total", "counter", "gRPC requests, by method and status.");
  readonly rejected = this.#family("tp_manager_rejected_total", "counter", "Requests refused early, by reason.");
  readonly sessionBufferedBytes = this.#family(
    "tp_manager_session_buffered_bytes",
    "gauge",
    "Bytes held for the sessions' streams against their budgets (--session-buffer-bytes): all sessions, and the most one holds (stat=max).",
  );
  readonly sessionBufferPauses = this.#family(
    "tp_manager_session_buffer_pauses_total",
    "counter",
    "Times a stream stopped reading its destination because its session's budget (--session-buffer-bytes) was full.",
  );
  readonly sessionsBufferFull = this.#family(
    "tp_manager_sessions_buffer_full_total",
    "counter",
    "Sessions that reached their buffer budget (--session-buffer-bytes) at least once.",
  );
  readonly bufferedBytes = this.#family(
    "tp_manager_stream_buffered_bytes",
    "gauge",
    "Bytes queued inside tunnel streams (both directions).",
  );

  #family(name: string, type: "counter" | "gauge", help: string): Family {
    const f = new Family(name, type, help);
    this.#families.push(f);
    return f;
  }

  render(): string {
    let out = "";
    for (const f of this.#families) {
      out += `# HELP ${f.name} ${f.help}\n# TYPE ${f.name} ${f.type}\n`;
      if (f.values.size === 0 && f.type === "gauge") out += `${f.name} 0\n`;
      for (const { labels, value } of f.values.values()) {
        const l = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",");
        out += `${f.name}${l ? `{${l}}` : ""} ${value}\n`;
      }
    }
    return out;
  }
}
