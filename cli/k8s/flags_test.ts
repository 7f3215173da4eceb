import assert from "node:assert/strict";
import { Command } from "@commander-js/extra-typings";
import { addKubeOptions } from "./flags.ts";

Deno.test("addKubeOptions() registers kubectl's flags and --manager-namespace (default tp)", () => {
  const cmd = addKubeOptions(new Command("x")).exitOverride();
  cmd.parse(["--kubeconfig", "/k", "--context", "c", "-n", "dev"], { from: "user" });
  assert.deepEqual(cmd.opts(), { kubeconfig: "/k", context: "c", namespace: "dev", managerNamespace: "tp" });
});
