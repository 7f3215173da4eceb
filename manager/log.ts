/**
 * The manager's structured logs: one JSON object a line on stderr, so `kubectl logs` and log shippers can read them.
 * A logger is two functions, passed in; tests give one that records lines, or `silentLogger`.
 */
export type LogFields = Record<string, string | number | boolean | undefined>;

export interface Logger {
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
}

/** A logger writing JSON lines through `write` (stderr by default). */
export function jsonLogger(write: (line: string) => void = (l) => console.error(l)): Logger {
  const emit = (level: string, msg: string, fields?: LogFields) =>
    write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }));
  return { info: (msg, fields) => emit("info", msg, fields), warn: (msg, fields) => emit("warn", msg, fields) };
}

export const silentLogger: Logger = { info() {}, warn() {} };

/** A logger that keeps every line, for tests. */
export function recordingLogger(): Logger & { lines: { level: string; msg: string; fields: LogFields }[] } {
  const lines: { level: string; msg: string; fields: LogFields }[] = [];
  return {
    lines,
    info: (msg, fields = {}) => lines.push({ level: "info", msg, fields }),
    warn: (msg, fields = {}) => lines.push({ level: "warn", msg, fields }),
  };
}
