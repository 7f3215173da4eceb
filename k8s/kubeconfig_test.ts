import assert from "node:assert/strict";
import type { V1Pod } from "@kubernetes/client-node";
import { K8sError } from "./errors.ts";
import { invokingUser, kubeconfigFiles } from "./kubeconfig.ts";
import { pickManagerPod } from "./portforward.ts";

const env = (vars: Record<string, string>, uid = 1000) => ({ get: (n: string) => vars[n], uid: () => uid });

Deno.test("kubeconfigFiles() follows kubectl: --kubeconfig, else KUBECONFIG's files, else ~/.kube/config", () => {
  assert.deepEqual(kubeconfigFiles({ kubeconfig: "/a" }, env({ KUBECONFIG: "/b:/c" })), ["/a"]);
  assert.deepEqual(kubeconfigFiles({}, env({ KUBECONFIG: "/b::/c", HOME: "/h" })), ["/b", "/c"]);
  assert.deepEqual(kubeconfigFiles({}, env({ HOME: "/home/me" })), ["/home/me/.kube/config"]);
});

Deno.test("invokingUser() is the user who ran sudo, with their home, only when this process is root", () => {
  const sudo = env({ HOME: "/root", SUDO_USER: "nobody", SUDO_UID: "65534", SUDO_GID: "65534" }, 0);
  const who = invokingUser(sudo);
  assert.equal(who?.uid, 65534);
  assert.ok(who?.home && who.home !== "/root");
  assert.equal(invokingUser(env({ SUDO_USER: "nobody", SUDO_UID: "65534", SUDO_GID: "65534" }, 1000)), undefined);
});

Deno.test("pickManagerPod() takes the newest ready pod and skips terminating ones", () => {
  const pod = (name: string, created: string, ready: boolean, deleting = false): V1Pod => ({
    metadata: { name, creationTimestamp: new Date(created), ...(deleting ? { deletionTimestamp: new Date() } : {}) },
    status: { phase: "Running", conditions: [{ type: "Ready", status: ready ? "True" : "False" }] },
  });
  const t = { context: "lab", managerNamespace: "tp" };
  const pods = [
    pod("old", "2025-01-01", true),
    pod("new", "2025-02-01", true),
    pod("newest-unready", "2025-03-01", false),
    pod("gone", "2025-04-01", true, true),
  ];
  assert.equal(pickManagerPod(pods, t).metadata?.name, "new");
  assert.throws(() => pickManagerPod([pods[3]!], t), (e) => e instanceof K8sError && e.kind === "no-manager");
  assert.throws(() => pickManagerPod([pods[2]!], t), (e) => e instanceof K8sError && e.kind === "manager-not-ready");
});
