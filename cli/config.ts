/**
 * tp's config file: defaults for any command's flags, one section per command, keys the flags' long names:
 *
 * ```yaml
 * connect:
 *   manager-url: http://198.18.0.2:8081
 *   also-proxy: [10.20.0.0/16]
 * install:
 *   timeout: 120
 * ```
 *
 * `$TP_CONFIG`, else `$XDG_CONFIG_HOME/tp/config.yaml` (~/.config/tp/config.yaml). A flag on the command line (and
 * the flag's environment variable) overrides the file; a list in the file is replaced, not extended, by the flag. An
 * unknown section or key is an error naming it. Loaded only when the file exists (cli/main.ts).
 */
import type { Command, Option } from "@commander-js/extra-typings";
import { parse } from "yaml";
import { UsageError } from "./errors.ts";
import { errorMessage } from "../base/error_message.ts";

export type Config = Record<string, Record<string, unknown>>;

/** Where tp looks for its config file. */
export function configPath(env: { get(name: string): string | undefined } = Deno.env): string {
  const explicit = env.get("TP_CONFIG");
  if (explicit) return explicit;
  const base = env.get("XDG_CONFIG_HOME") || `${env.get("HOME") ?? ""}/.config`;
  return `${base}/tp/config.yaml`;
}

/** Reads and checks the file's shape: a mapping of sections (each a known command) to mappings. */
export async function loadConfig(path: string, commands: readonly string[]): Promise<Config> {
  let doc: unknown;
  try {
    doc = parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new UsageError(`cannot read the config file ${path}: ${errorMessage(e).split("\n")[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new UsageError(`the config file ${path} is not a mapping of sections (connect:, install:, ...)`);
  }
  for (const [section, body] of Object.entries(doc)) {
    if (!commands.includes(section)) {
      throw new UsageError(
        `unknown section "${section}" in the config file ${path}: sections are tp's commands (${commands.join(", ")})`,
      );
    }
    if (body !== null && (typeof body !== "object" || Array.isArray(body))) {
      throw new UsageError(`section "${section}" of the config file ${path} is not a mapping of flags to values`);
    }
  }
  return doc as Config;
}

// deno-lint-ignore no-explicit-any
type AnyCommand = Command<any, any, any>;
// deno-lint-ignore no-explicit-any
type AnyOption = Option<any, any, any, any, any>;

/** Makes the section's values the command's flag defaults, each checked as the flag would check it. */
export function applyConfig(cmd: AnyCommand, section: Record<string, unknown> | null | undefined, path: string): void {
  if (!section) return;
  const options = (cmd.options as readonly AnyOption[]).filter((o) => o.long && !o.hidden);
  for (const [key, value] of Object.entries(section)) {
    const where = `${cmd.name()}.${key} in the config file ${path}`;
    const option = options.find((o) => o.long === `--${key}`);
    if (!option || key === "help") {
      throw new UsageError(
        `unknown key ${cmd.name()}.${key} in the config file ${path}: its keys are ${cmd.name()}'s flags (` +
          options.map((o) => o.long!.slice(2)).join(", ") + ")",
      );
    }
    cmd.setOptionValueWithSource(option.attributeName(), configValue(option, value, where), "config");
  }
}

function configValue(option: AnyOption, value: unknown, where: string): unknown {
  if (!option.required && !option.optional) { // a switch
    if (typeof value !== "boolean") throw new UsageError(`${where}: use true or false`);
    return value;
  }
  const repeatable = Array.isArray(option.defaultValue);
  const values = Array.isArray(value) ? value : [value];
  if (values.some((v) => typeof v !== "string" && typeof v !== "number") || (!repeatable && values.length !== 1)) {
    throw new UsageError(`${where}: use ${repeatable ? "a list of values" : "one value"}`);
  }
  const parse = option.parseArg;
  let out: unknown = repeatable ? option.defaultValue : undefined;
  for (const v of values.map(String)) {
    try {
      out = parse ? parse(v, out) : v;
    } catch (e) {
      throw new UsageError(`${where}: ${errorMessage(e)}`);
    }
  }
  if (repeatable && parse) {
    // The command line replaces the file's list: its first value starts from the flag's own default.
    let fresh = true;
    option.parseArg = (v: string, previous: unknown) => {
      const start = fresh ? option.defaultValue : previous;
      fresh = false;
      return parse(v, start);
    };
  }
  return out;
}

/** The config as `tp config view` shows it: secrets (a token) replaced by "(set)". */
export function redacted(config: Config): Config {
  const out: Config = {};
  for (const [section, body] of Object.entries(config)) {
    out[section] = Object.fromEntries(
      Object.entries(body ?? {}).map(([k, v]) => [k, /token|password|secret/i.test(k) ? "(set)" : v]),
    );
  }
  return out;
}
