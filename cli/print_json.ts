/** Prints a value as one JSON document followed by a newline (no dependencies: the quick commands use it). */
export function printJson(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}
