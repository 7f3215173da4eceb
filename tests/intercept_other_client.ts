/**
 * A second workstation for tests/intercept_test.ts: connects to the manager as "other-laptop", tries to intercept a
 * workload's port, and prints the manager's refusal (or "intercepted" if it was not refused). Run in a namespace
 * that reaches the manager: deno run -A intercept_other_client.ts URL WORKLOAD APP_PORT
 */
import { connect } from "../proto/mod.ts";

const [url, workload, port] = Deno.args;
const s = await connect(url!, undefined, { clientName: "other-laptop", namespace: "default" });
try {
  await s.createIntercept(workload!, Number(port), 18080);
  console.log("intercepted");
} catch (e) {
  console.log((e as Error).message);
} finally {
  await s.depart();
}
