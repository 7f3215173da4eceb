/**
 * What the daemon answers on its control socket (control.ts): `tp quit`, `tp status` (and a second `tp connect`'s
 * comparison of settings), `tp intercept`, `tp leave`, `tp list` and `tp loglevel`.
 */
import type { ControlHandler } from "./control.ts";
import type { DaemonDns } from "./dns.ts";
import type { DaemonIntercepts } from "./intercepts.ts";
import { isLogLevel, type LevelLog } from "./log_file.ts";
import { type ConnectSettings, settingsDiff } from "./settings.ts";
import type { DaemonStatus } from "./status.ts";

export interface ControlParts {
  /** Stops the daemon (after the answer went out). */
  quit: () => void;
  status: () => DaemonStatus;
  dns: DaemonDns;
  intercepts: DaemonIntercepts;
  /** What the daemon runs with, compared with a second `tp connect`'s. */
  settings: ConnectSettings;
  log: { logger: LevelLog | undefined; path: string };
}

export function controlHandler(p: ControlParts): ControlHandler {
  const { intercepts, log } = p;
  return async (req) => {
    switch (req.op) {
      case "quit":
        queueMicrotask(p.quit);
        return { quitting: true };
      case "intercept":
        return await intercepts.create(
          String(req.workload),
          Number(req.appPort) || 0,
          Number(req.localPort),
          req.mount ? { dir: String(req.mount.dir), required: req.mount.required === true } : undefined,
        );
      case "leave":
        return { removed: await intercepts.leave(String(req.workload ?? ""), Number(req.appPort) || 0) };
      case "list":
        // The manager's view, and this machine's mounts (their states are only known here).
        return { ...await intercepts.list(String(req.namespace ?? "")), mounts: intercepts.mounts() };
      case "status": {
        // What the system's resolver says now, not what tp last wrote.
        const s = p.status();
        const now = { ...s, dns: { ...s.dns, system: await p.dns.systemResolver() } };
        return req.compare
          ? { ...now, differs: settingsDiff(p.settings, req.compare as unknown as ConnectSettings) }
          : now;
      }
      case "loglevel":
        if (!isLogLevel(String(req.level))) throw new TypeError(`unknown log level "${req.level}"`);
        if (log.logger) log.logger.level = req.level;
        return { level: log.logger?.level ?? req.level, log: log.path };
    }
  };
}
