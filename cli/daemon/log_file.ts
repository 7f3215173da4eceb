/**
 * The background daemon's log (TP_STATE_DIR/daemon.log, which `tp status` names): timestamped lines, each with its
 * level, filtered by the level `--log-level` or `tp loglevel` set, rotated at 10 MiB to daemon.log.1 (one old file
 * kept, so the log never takes more than twice that). Write errors are ignored: there is nowhere to report them.
 */

import { noSymlinkAt } from "./state_dir.ts";

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = typeof LOG_LEVELS[number];

/** Where a log line goes: the daemon's file, or stderr in the foreground. `level` is "info" when not given. */
export type Log = (line: string, level?: LogLevel) => void;

export const LOG_MAX_BYTES = 10 * 1024 * 1024;

export function isLogLevel(s: string): s is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(s);
}

/** A log with a level that can change while it runs: the daemon's file, or stderr in the foreground. */
export interface LevelLog {
  level: LogLevel;
  enabled(level: LogLevel): boolean;
  readonly write: Log;
}

/**
 * Lines on stderr as "tp: LINE" (the foreground daemon on a terminal), filtered by level like the file; lines that
 * match `except` are left out (what the progress already printed).
 */
export function stderrLog(level: LogLevel = "info", except?: RegExp): LevelLog {
  const log: LevelLog = {
    level,
    enabled: (l) => LOG_LEVELS.indexOf(l) >= LOG_LEVELS.indexOf(log.level),
    write: (line, l = "info") => {
      if (log.enabled(l) && !except?.test(line)) console.error(`tp: ${line}`);
    },
  };
  return log;
}

export class LogFile implements LevelLog {
  #level: LogLevel;
  #size: number;
  readonly #maxBytes: number;
  readonly #now: () => Date;
  readonly #enc = new TextEncoder();

  constructor(readonly path: string, opts: { level?: LogLevel; maxBytes?: number; now?: () => Date } = {}) {
    this.#level = opts.level ?? "info";
    this.#maxBytes = opts.maxBytes ?? LOG_MAX_BYTES;
    this.#now = opts.now ?? (() => new Date());
    try {
      Deno.mkdirSync(path.replace(/\/[^/]*$/, ""), { recursive: true });
    } catch { /* the first write says nothing either */ }
    try {
      noSymlinkAt(path); // root appends here: never through a symlink (cli/daemon/state_dir.ts)
      this.#size = Deno.statSync(path).size;
    } catch {
      this.#size = 0;
    }
  }

  get level(): LogLevel {
    return this.#level;
  }

  set level(level: LogLevel) {
    this.#level = level;
  }

  /** Whether a line of this level would be written (callers skip building debug lines otherwise). */
  enabled(level: LogLevel): boolean {
    return LOG_LEVELS.indexOf(level) >= LOG_LEVELS.indexOf(this.#level);
  }

  readonly write: Log = (line, level = "info") => {
    if (!this.enabled(level)) return;
    const bytes = this.#enc.encode(`${this.#now().toISOString()} ${level} ${line}\n`);
    if (this.#size > 0 && this.#size + bytes.length > this.#maxBytes) this.#rotate();
    try {
      Deno.writeFileSync(this.path, bytes, { append: true });
      this.#size += bytes.length;
    } catch { /* nowhere to say it */ }
  };

  #rotate(): void {
    try {
      noSymlinkAt(`${this.path}.1`);
      Deno.renameSync(this.path, `${this.path}.1`);
    } catch { /* a new file starts anyway */ }
    this.#size = 0;
  }
}
