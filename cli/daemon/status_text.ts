/**
 * `tp status` for a person: the daemon's status object in a few lines. Counters that are zero are left out; every
 * counter is in `tp status -o json`.
 */

// deno-lint-ignore no-explicit-any
type Status = any;

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024, i = 0;
  while (v >= 1024 && i < units.length - 1) v /= 1024, i++;
  return `${v.toFixed(1)} ${units[i]}`;
}

function uptime(since: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(since)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

/** Non-zero counters as "name n, name n", or "none". */
function nonZero(counters: Record<string, unknown> | undefined, names?: readonly string[]): string {
  const out: string[] = [];
  for (const [k, v] of Object.entries(counters ?? {})) {
    if (typeof v === "number" && v > 0 && (!names || names.includes(k))) out.push(`${k} ${v}`);
  }
  return out.length ? out.join(", ") : "none";
}

const TCP_TROUBLE = [
  "retransmittedSegments",
  "fastRetransmits",
  "rtoExpiries",
  "timeouts",
  "resetsSent",
  "resetsReceived",
  "outOfOrderOverflowDrops",
  "sackBlocksIgnored",
  "heldSynTimeouts",
  "dataAfterFinDrops",
] as const;

/** HH:MM:SS of an ISO time, in local time. */
function clock(iso: string): string {
  return new Date(iso).toTimeString().slice(0, 8);
}

/** Whether the system's resolver points at tp now, and what tp did when another program rewrote resolv.conf. */
function resolverText(d: Status): string {
  const parts: string[] = [];
  if (d.system) parts.push(`${d.system.pointsAtTp ? "points at tp" : "does NOT point at tp"}: ${d.system.detail}`);
  const f = d.follow;
  if (f?.state === "backing-off") {
    parts.push(
      `another program keeps rewriting resolv.conf: tp is backing off until ${clock(f.backingOffUntil)}, then ` +
        `looks again`,
    );
  } else if (f?.newOriginals) {
    parts.push(`took ${f.newOriginals} new resolv.conf from the network (last at ${clock(f.lastNewOriginalAt)})`);
  }
  if (f?.backOffs && f.state !== "backing-off") parts.push(`backed off ${f.backOffs}x from a program rewriting it`);
  return parts.join("; ");
}

/** How the last reconnection went: "; last at 12:00:01: the manager had restarted". */
function lastReconnectText(m: Status): string {
  const l = m.lastReconnect;
  if (!l) return "";
  const how = l.kind === "manager-restarted"
    ? "a new manager (it had restarted): open connections were reset"
    : l.kind === "resumed"
    ? "the same session resumed: open connections carried on"
    : "a new session: open connections were reset";
  return `; last at ${clock(l.at)}: ${how}`;
}

/** Session resume: the manager's grace period and what resumed so far. */
function resumeText(m: Status): string {
  if (!m.resumeGraceMs) return "not offered by this traffic-manager (open connections reset when the link breaks)";
  const grace = `open connections survive a broken link of up to ${Math.round(m.resumeGraceMs / 1000)} s`;
  if (m.streamsPaused) {
    const until = typeof m.pausedUntil === "string" ? ` (until ${m.pausedUntil.slice(11, 19)} UTC)` : "";
    return `the link is down: ${m.streamsPaused} open connection(s) paused, waiting for it${until}; ${grace}`;
  }
  if (!m.resumes) return grace;
  return `${grace}; resumed ${m.resumes}x, ${m.streamsResumed ?? 0} connection(s) carried on` +
    (m.streamsLost ? `, ${m.streamsLost} lost` : "");
}

/** ICMP echo through the manager: counts, or why the manager cannot send it. */
function pingText(p: Status): string {
  const counts = `${p.requests ?? 0} echo requests, ${p.replies ?? 0} replies` +
    (p.dropped ? `, ${p.dropped} dropped (too many waiting)` : "");
  return p.unavailable ? `not available at the traffic-manager: ${p.unavailable} (${counts})` : counts;
}

/** A mount's state for a person: "mounted", "reconnecting (why)", "failed: why". */
export function mountStateText(m: { state: string; reason?: string; remounts?: number }): string {
  if (m.state === "mounted") return m.remounts ? `mounted (made again ${m.remounts}x)` : "mounted";
  if (m.state === "reconnecting") return `reconnecting${m.reason ? ` (${m.reason})` : ""}`;
  return `${m.state}: ${m.reason ?? "?"}`;
}

/** This machine's intercepts, one line each, with the workload's volumes when mounted. */
function interceptLines(i: Status): string[] {
  const mounts: Status[] = i?.mounts ?? [];
  const lines = (i?.active ?? []).map((a: Status) =>
    `${a.workload} port ${a.appPort} -> 127.0.0.1:${a.localPort} (pod ${a.podName || "?"})`
  );
  for (const m of mounts) lines.push(`${m.workload}'s volumes at ${m.dir}: ${mountStateText(m)}`);
  return lines.map((l: string, n: number) => `  ${n ? "" : "intercepts:"}`.padEnd(15) + l);
}

export function formatStatus(s: Status): string {
  const m = s.manager ?? {};
  const where = m.url ??
    (m.portForward
      ? `pod ${m.portForward.pod} in namespace ${m.portForward.namespace} (context ${m.portForward.context})`
      : "?");
  const link = m.state === "connected" ? "connected" : `${m.state}${m.lastError ? `: ${m.lastError}` : ""}`;
  const d = s.dns ?? {};
  const c = s.connections ?? {};
  const r = s.router ?? {};
  const lines = [
    `tp: connected (pid ${s.pid}, up ${uptime(s.startedAt)})`,
    `  manager:     ${where}, version ${m.version}, session ${String(m.session).slice(0, 8)}: ${link}` +
    (m.reconnects ? ` (reconnected ${m.reconnects}x${lastReconnectText(m)})` : ""),
    `  resume:      ${resumeText(m)}`,
    `  namespace:   ${s.namespace}`,
    `  device:      ${s.device?.name}, MTU ${s.device?.mtu}: ${s.device?.readPackets} packets in, ` +
    `${s.device?.writtenPackets} out`,
    `  routes:      ${(s.subnets?.routed ?? []).join(", ")}`,
    `  dns:         ${d.address} (${d.mode}${
      d.resolvedVia ? ` through ${d.resolvedVia}` : ""
    }) answers ${d.clusterDomain} names; others go to ` +
    `${(d.upstreams ?? []).join(", ") || "(no nameserver)"}; ${d.queries ?? 0} queries, ${
      d.cacheHits ?? 0
    } from cache, ` +
    `${d.servfail ?? 0} SERVFAIL`,
    ...(d.system || d.follow ? [`  resolver:    ${resolverText(d)}`] : []),
    `  connections: TCP ${c.tcpActive ?? 0} open, ${c.tcpOpened ?? 0} opened, ${c.tcpRefused ?? 0} refused; ` +
    `UDP ${c.udpActive ?? 0} flows, ${c.udpOpened ?? 0} opened`,
    `  traffic:     ${bytes(c.bytesInbound ?? 0)} to the cluster, ${bytes(c.bytesOutbound ?? 0)} back`,
    ...(s.ping ? [`  ping:        ${pingText(s.ping)}`] : []),
    ...interceptLines(s.intercepts),
    `  drops:       ${nonZero({ ...r.drops, udpDatagramsDropped: c.udpDatagramsDropped })}`,
    `  tcp trouble: ${nonZero(r.tcp, TCP_TROUBLE)}`,
    ...(s.log ? [`  log:         ${s.log.path} (${s.log.level} and above; tp loglevel LEVEL changes it)`] : []),
  ];
  return lines.join("\n");
}
