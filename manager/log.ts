/**
 * The manager's structured logs: one JSON object a line on stderr, so `kubectl logs` and log shippers can read them.
 * A logger is two functions, passed in; tests give one that records lines, or `silentLogger`.
 */
export type LogFields = Record<string, string | number | boolean | undefined>;

export interface Logger {
  /** Per-stream events (a stream ended): off unless --log-level debug, since they come at the rate of connections. */
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
}

export const LOG_LEVELS = ["debug", "info", "warn"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A logger writing JSON lines through `write` (stderr by default), from `level` up. */
export function jsonLogger(level: LogLevel = "info", write: (line: string) => void = (l) => console.error(l)): Logger {
  const min = LOG_LEVELS.indexOf(level);
  const at = (l: LogLevel) =>
    LOG_LEVELS.indexOf(l) < min
      ? () => {}
      : (msg: string, fields?: LogFields) =>
        write(JSON.stringify({ time: new Date().toISOString(), level: l, msg, ...fields }));
  return { debug: at("debug"), info: at("info"), warn: at("warn") };
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {} };

/** A logger that keeps every line, for tests. */
export function recordingLogger(): Logger & { lines: { level: string; msg: string; fields: LogFields }[] } {
  const lines: { level: string; msg: string; fields: LogFields }[] = [];
  return {
    lines,
    debug: (msg, fields = {}) => lines.push({ level: "debug", msg, fields }),
    info: (msg, fields = {}) => lines.push({ level: "info", msg, fields }),
    warn: (msg, fields = {}) => lines.push({ level: "warn", msg, fields }),
  };
}
