import { Option } from "@commander-js/extra-typings";
export { printJson } from "./print_json.ts";

/** The `-o/--output` flag shared by every command whose output scripts may read. */
export function outputOption() {
  return new Option("-o, --output <format>", "output format: text or json").choices(["text", "json"] as const)
    .default("text" as const);
}
