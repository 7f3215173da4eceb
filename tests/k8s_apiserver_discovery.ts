/**
 * The API server double's discovery answers, as kubectl and client libraries read them before anything else: /version,
 * /api, /apis and /api/v1 or /apis/{group}/{version} (legacy, unaggregated discovery), all made from RESOURCES. Pure:
 * each function is the body of one answer.
 */
import { RESOURCES } from "./k8s_apiserver_objects.ts";

/** /version. */
export function versionInfo(gitVersion: string) {
  return {
    major: "1",
    minor: "32",
    gitVersion,
    gitCommit: "0000000000000000000000000000000000000000",
    gitTreeState: "clean",
    buildDate: "2025-01-01T00:00:00Z",
    goVersion: "go1.23.0",
    compiler: "gc",
    platform: "linux/amd64",
  };
}

/** /api: the core group's versions, and the server's address (`host`, host:port) for every client. */
export function apiVersions(host: string) {
  return {
    kind: "APIVersions",
    versions: ["v1"],
    serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: host }],
  };
}

/** /apis: every named group, with its one version. */
export function apiGroupList() {
  const groups = [...new Set(RESOURCES.filter((r) => r.group).map((r) => `${r.group}/${r.version}`))];
  return {
    kind: "APIGroupList",
    apiVersion: "v1",
    groups: groups.map((gv) => {
      const [name, version] = gv.split("/");
      const v = { groupVersion: gv, version };
      return { name, versions: [v], preferredVersion: v };
    }),
  };
}

/** /api/v1 or /apis/{group}/{version}: the group version's resources, and pods/portforward in the core group. */
export function apiResourceList(group: string, version: string) {
  return {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: group ? `${group}/${version}` : version,
    resources: RESOURCES.filter((r) => r.group === group && r.version === version).flatMap((r) => [
      {
        name: r.plural,
        singularName: r.singular,
        namespaced: r.namespaced,
        kind: r.kind,
        verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
        ...(r.shortNames ? { shortNames: r.shortNames } : {}),
      },
      ...(r.plural === "pods"
        ? [{
          name: "pods/portforward",
          singularName: "",
          namespaced: true,
          kind: "PodPortForwardOptions",
          verbs: ["create", "get"],
        }]
        : []),
    ]),
  };
}
