import assert from "node:assert/strict";
import { applyConfig, configPath, loadConfig, redacted } from "./config.ts";
import { connectCommand } from "./connect_command.ts";
import { UsageError } from "./errors.ts";

const env = (vars: Record<string, string>) => ({ get: (k: string) => vars[k] });

async function parsed(section: Record<string, unknown>, argv: string[]) {
  const cmd = connectCommand().exitOverride().action(() => {});
  applyConfig(cmd, section, "config.yaml");
  await cmd.parseAsync(argv, { from: "user" });
  return cmd.opts();
}

Deno.test("configPath() is TP_CONFIG, else $XDG_CONFIG_HOME/tp/config.yaml, else ~/.config/tp/config.yaml", () => {
  assert.equal(configPath(env({ TP_CONFIG: "/x/c.yaml", HOME: "/h" })), "/x/c.yaml");
  assert.equal(configPath(env({ XDG_CONFIG_HOME: "/xdg", HOME: "/h" })), "/xdg/tp/config.yaml");
  assert.equal(configPath(env({ HOME: "/h" })), "/h/.config/tp/config.yaml");
});

Deno.test("applyConfig() makes the file's values the defaults, and a flag overrides them", async () => {
  const section = { "manager-url": "http://198.18.0.2:8081", namespace: "dev", "also-proxy": ["10.1.0.0/16"] };
  const defaults = await parsed(section, []);
  assert.equal(defaults.managerUrl, "http://198.18.0.2:8081");
  assert.equal(defaults.namespace, "dev");
  assert.deepEqual(defaults.alsoProxy, ["10.1.0.0/16"]);
  const flags = await parsed(section, ["--manager-url", "http://198.18.0.3:8081", "--also-proxy", "10.2.0.0/16"]);
  assert.equal(flags.managerUrl, "http://198.18.0.3:8081");
  assert.deepEqual(flags.alsoProxy, ["10.2.0.0/16"], "the flag replaces the file's list");
  assert.equal(flags.namespace, "dev");
});

Deno.test("applyConfig() refuses an unknown key, a hidden flag and a value of the wrong kind, naming them", () => {
  const refuse = (section: Record<string, unknown>, message: RegExp) =>
    assert.throws(() => applyConfig(connectCommand(), section, "c.yaml"), (e) => {
      assert.ok(e instanceof UsageError);
      assert.match(e.message, message);
      return true;
    });
  refuse(
    { "manager-urll": "x" },
    /^unknown key connect\.manager-urll in the config file c\.yaml: its keys are .*manager-url/,
  );
  refuse({ progress: "json" }, /unknown key connect\.progress/);
  refuse({ output: "yaml" }, /^connect\.output in the config file c\.yaml: .*text, json/);
  refuse({ foreground: "yes" }, /^connect\.foreground .*: use true or false/);
  refuse({ "manager-url": ["a", "b"] }, /^connect\.manager-url .*: use one value/);
});

Deno.test("loadConfig() refuses a section that is not a command, and redacted() hides tokens", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/c.yaml`, "conect:\n  token: x\n");
    await assert.rejects(() => loadConfig(`${dir}/c.yaml`, ["connect"]), /unknown section "conect" .*\(connect\)/);
    await Deno.writeTextFile(`${dir}/c.yaml`, "connect:\n  token: s3cret\n  namespace: dev\n");
    const config = await loadConfig(`${dir}/c.yaml`, ["connect"]);
    assert.deepEqual(redacted(config), { connect: { token: "(set)", namespace: "dev" } });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
