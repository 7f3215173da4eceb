/** Errors every command may throw to end tp with a particular exit code. */

/** A flag's value is wrong: the message names the flag and the fix; tp exits 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Ends tp with this exit code, having printed what needed printing. */
export class ExitWith extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
    this.name = "ExitWith";
  }
}
