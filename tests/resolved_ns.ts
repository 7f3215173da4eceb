/**
 * The real systemd-resolved on the lab's workstation: Debian's package, unpacked by scripts/install_deps into
 * .tools/systemd-resolved (never installed), run in a private mount namespace inside the workstation's network
 * namespace, with a system bus of its own. Nothing of the host changes: its /run, /etc, resolv.conf and system bus are
 * not touched.
 *
 * A holder process (`ip netns exec <ws> unshare --mount --propagation private sleep`) keeps the mount namespace;
 * tests/resolved_ns_setup.sh mounts a tmpfs over its /run and an overlay over its /etc (the `systemd-resolve` user,
 * resolv.conf -> /run/systemd/resolve/stub-resolv.conf as on Ubuntu, a resolved.conf naming the workstation's
 * dnsmasq); then dbus-daemon (a system bus with Debian's policy and resolved's own bus policy file) and
 * systemd-resolved (started as root, it drops to `systemd-resolve` itself) run there. Every command of a test enters
 * that namespace with `nsenter --mount --net --target <holder>`, so `tp connect`'s daemon, resolvectl and the clients
 * all see the same /run and /etc. Every process is ended by its pid.
 */
import { type ClusterProcess, spawnLogged, TP } from "./connect_fixture.ts";
import {
  exec,
  type ExecOptions,
  type ExecResult,
  LAB,
  type LabConfig,
  requireRoot,
  requireTools,
  ROOT,
} from "./lab.ts";

/** Where scripts/install_deps unpacks systemd-resolved and libsystemd-shared. */
export const RESOLVED_ROOT = `${ROOT}/.tools/systemd-resolved`;
/** tp's state directory inside the namespace (on its private /run). */
export const NS_STATE_DIR = "/run/tp-state";
/** A bus address where no bus listens: tp's daemon gets it when the test wants the bus unreachable for tp. */
export const UNREACHABLE_BUS = "unix:path=/run/dbus/tp-test-no-bus-here";
const WAIT_MS = 15_000;

export interface ResolvedNs {
  /** The pid whose mount and network namespaces every command enters. */
  readonly holder: number;
  /** A resolvectl on the test's PATH for tp: the unpacked one, with its libraries and the namespace's bus. */
  readonly resolvectl: string;
  /** Runs a command inside the namespace, bounded by a timeout. */
  run(cmd: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Runs `tp ARGS` inside, with NS_STATE_DIR, the resolvectl above on PATH, and `env` added. */
  tp(args: string[], env?: Record<string, string>): Promise<ExecResult>;
  /** Reads a file as the namespace sees it (through /proc/<holder>/root). */
  readFile(path: string): Promise<string>;
  /** The last 50 kB of resolved's log (debug level), since it last started. */
  resolvedLog(): string;
  /** Stops systemd-resolved (SIGTERM, as `systemctl stop` does), by its pid. */
  stopResolved(): Promise<void>;
  /** Starts systemd-resolved (again) and waits until it serves. */
  startResolved(): Promise<void>;
  /** Ends resolved, the bus and the holder, by pid. */
  stop(): Promise<void>;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The unpacked package's library directory (usr/lib/<triplet>/systemd, where libsystemd-shared-N.so is). */
function libraryDir(): string | null {
  try {
    for (const e of Deno.readDirSync(`${RESOLVED_ROOT}/usr/lib`)) {
      const dir = `${RESOLVED_ROOT}/usr/lib/${e.name}/systemd`;
      try {
        if ([...Deno.readDirSync(dir)].some((f) => /^libsystemd-shared-\d+\.so$/.test(f.name))) return dir;
      } catch { /* not this one */ }
    }
  } catch { /* no usr/lib */ }
  return null;
}

/**
 * Throws, naming what is missing and how to get it, unless the unpacked systemd-resolved is there and runs. Nothing is
 * skipped.
 */
export async function requireResolvedPackage(): Promise<{ libDir: string }> {
  const how =
    "bash scripts/install_deps downloads Debian's systemd-resolved and libsystemd-shared (apt-get download) " +
    `and unpacks them into ${RESOLVED_ROOT} (dpkg-deb -x), installing neither`;
  const missing = [`${RESOLVED_ROOT}/lib/systemd/systemd-resolved`, `${RESOLVED_ROOT}/usr/bin/resolvectl`].filter(
    (f) => {
      try {
        return !Deno.statSync(f).isFile;
      } catch {
        return true;
      }
    },
  );
  const libDir = libraryDir();
  if (!libDir) missing.push(`${RESOLVED_ROOT}/usr/lib/<triplet>/systemd/libsystemd-shared-<N>.so`);
  if (missing.length || !libDir) throw new Error(`This test needs ${missing.join(", ")}: ${how}`);
  const v = await exec([`${RESOLVED_ROOT}/lib/systemd/systemd-resolved`, "--version"], {
    env: { LD_LIBRARY_PATH: libDir },
    timeoutMs: 10_000,
  });
  if (v.code !== 0) {
    throw new Error(
      `The unpacked systemd-resolved does not run (exit ${v.code}): ${v.stderr.trim()}; a library it loads may be ` +
        `missing (scripts/install_deps installs them)`,
    );
  }
  return { libDir };
}

/** dbus-daemon's configuration: Debian's system bus policy (/usr/share/dbus-1/system.conf) plus resolved's file. */
function busConfig(): string {
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Peer"/>
  </policy>
  <include>${RESOLVED_ROOT}/usr/share/dbus-1/system.d/org.freedesktop.resolve1.conf</include>
</busconfig>
`;
}

async function until(what: string, ready: () => boolean | Promise<boolean>, log: () => string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error(`${what} within ${WAIT_MS} ms:\n${log().slice(-5_000)}`);
    await sleep(50);
  }
}

/** Starts the namespace, its bus and systemd-resolved in the lab's workstation namespace; waits until resolved serves. */
export async function startResolvedNs(cfg: LabConfig = LAB): Promise<ResolvedNs> {
  requireRoot();
  requireTools("unshare", "nsenter", "dbus-daemon", "bash");
  const { libDir } = await requireResolvedPackage();
  const tmp = await Deno.makeTempDir({ prefix: "tp-resolved-ns-" });
  const started: ClusterProcess[] = [];
  const stop = async () => {
    for (const p of started.reverse()) await p.stop();
    started.length = 0;
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  };
  try {
    const ownMnt = Deno.readLinkSync("/proc/self/ns/mnt");
    // Bounded: should the test itself die, the namespace's processes do not outlive it by more than this.
    const holderProc = spawnLogged([
      "ip",
      "netns",
      "exec",
      cfg.namespaces.workstation,
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "sleep",
      "900",
    ]);
    started.push(holderProc);
    const holder = holderProc.pid;
    // ip netns exec and unshare exec in place: the holder is in its namespace once its pid runs sleep.
    await until("the namespace holder did not start", () => {
      try {
        return Deno.readLinkSync(`/proc/${holder}/exe`).endsWith("/sleep");
      } catch {
        return false;
      }
    }, holderProc.log);
    if (Deno.readLinkSync(`/proc/${holder}/ns/mnt`) === ownMnt) throw new Error("unshare --mount made no namespace");
    const enter = ["nsenter", "--target", String(holder), "--mount", "--net", "--"];
    const run = (cmd: string[], opts: ExecOptions = {}) => exec([...enter, ...cmd], opts);
    const ws = cfg.workstationDns;
    const setup = await run(["bash", `${ROOT}/tests/resolved_ns_setup.sh`, ownMnt, ws.ip, ws.searchDomain]);
    if (setup.code !== 0) throw new Error(`tests/resolved_ns_setup.sh failed (exit ${setup.code}): ${setup.stderr}`);
    const inside = (p: string) => `/proc/${holder}/root${p}`;

    await Deno.writeTextFile(`${tmp}/bus.conf`, busConfig());
    const bus = spawnLogged([...enter, "dbus-daemon", `--config-file=${tmp}/bus.conf`, "--nofork", "--nopidfile"]);
    started.push(bus);
    await until("the namespace's dbus-daemon did not listen", () => {
      try {
        return Deno.statSync(inside("/run/dbus/system_bus_socket")).isSocket === true;
      } catch {
        return false;
      }
    }, bus.log);

    // The unpacked resolvectl needs its own libraries; it talks to the namespace's bus whatever tp's daemon was given.
    const resolvectl = `${tmp}/bin/resolvectl`;
    await Deno.mkdir(`${tmp}/bin`);
    await Deno.writeTextFile(
      resolvectl,
      `#!/bin/sh\n# The unpacked resolvectl (tests/resolved_ns.ts): its libraries, and the namespace's own system bus.\n` +
        `export LD_LIBRARY_PATH='${libDir}' DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket\n` +
        `exec '${RESOLVED_ROOT}/usr/bin/resolvectl' "$@"\n`,
    );
    await Deno.chmod(resolvectl, 0o755);

    let resolved: ClusterProcess | null = null;
    const startResolved = async () => {
      const proc = spawnLogged([...enter, `${RESOLVED_ROOT}/lib/systemd/systemd-resolved`], {
        env: { LD_LIBRARY_PATH: libDir, SYSTEMD_LOG_LEVEL: "debug" },
      });
      resolved = proc;
      started.push(proc);
      await until("systemd-resolved did not serve", async () => {
        if (proc.exited()) throw new Error(`systemd-resolved exited:\n${proc.log().slice(-5_000)}`);
        try {
          Deno.statSync(inside("/run/systemd/resolve/stub-resolv.conf"));
        } catch {
          return false;
        }
        return (await run([resolvectl, "status"], { timeoutMs: 5_000 })).code === 0;
      }, proc.log);
    };
    await startResolved();
    const resolvedLog = () => (resolved as ClusterProcess | null)?.log() ?? "";

    return {
      holder,
      resolvectl,
      run,
      tp: (args, env = {}) =>
        run([
          "env",
          "-u",
          "DBUS_SYSTEM_BUS_ADDRESS",
          `PATH=${tmp}/bin:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
          `TP_STATE_DIR=${NS_STATE_DIR}`,
          "NO_COLOR=1",
          ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
          TP,
          ...args,
        ], { timeoutMs: 60_000 }),
      readFile: (path) => Deno.readTextFile(inside(path)),
      resolvedLog,
      async stopResolved() {
        const old = resolved;
        if (!old) return;
        resolved = null;
        await old.stop();
        started.splice(started.indexOf(old), 1);
      },
      startResolved,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
