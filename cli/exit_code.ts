/** tp's exit codes, the same for every command. */
export const ExitCode = {
  /** Done. */
  ok: 0,
  /** Something failed; the message says what. */
  failure: 1,
  /** A command or flag was wrong; the message names it and the fix. */
  usage: 2,
  /** `tp status`: tp is not connected. */
  notConnected: 3,
} as const;
