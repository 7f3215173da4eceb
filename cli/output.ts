import { Option } from "@commander-js/extra-typings";

/** The `-o/--output` flag shared by every command whose output scripts may read. */
export function outputOption() {
  return new Option("-o, --output <format>", "output format: text or json").choices(["text", "json"] as const)
    .default("text" as const);
}

/** Prints a value as one JSON document followed by a newline. */
export function printJson(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}
