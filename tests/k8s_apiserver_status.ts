/**
 * The API server double's failure answers: Kubernetes Status objects in kube-apiserver's own words (the 403 of RBAC,
 * the 422 of a field that does not validate), and `HttpError`, which a route throws to answer with one. Pure: nothing
 * here reads the double's store.
 */
import type { Access, ResourceDef } from "./k8s_apiserver_objects.ts";

/** A route's failure: the status code and the Status object the double answers with. */
export class HttpError extends Error {
  constructor(readonly status: number, readonly body: unknown) {
    super(`HTTP ${status}`);
  }
}

export function status(code: number, reason: string, message: string, details?: Record<string, unknown>) {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
    ...(details ? { details } : {}),
    code,
  };
}

/** kube-apiserver's forbidden message (k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go). */
export function forbidden(a: Access, def: ResourceDef) {
  const res = a.group ? `"${a.resource}" in API group "${a.group}"` : `"${a.resource}" in API group ""`;
  const scope = a.namespace ? ` in the namespace "${a.namespace}"` : " at the cluster scope";
  const subject = a.name ? `${a.resource.split("/")[0]}${a.group ? "." + a.group : ""} "${a.name}"` : `${def.plural}`;
  return status(
    403,
    "Forbidden",
    `${subject} is forbidden: User "${a.user}" cannot ${a.verb} resource ${res}${scope}`,
    {
      ...(a.name ? { name: a.name } : {}),
      ...(a.group ? { group: a.group } : {}),
      kind: a.resource.split("/")[0],
    },
  );
}

export function invalid(kind: string, name: string, field: string, detail: string) {
  return status(422, "Invalid", `${kind} "${name}" is invalid: ${field}: ${detail}`, {
    name,
    kind,
    causes: [{ reason: "FieldValueInvalid", message: detail, field }],
  });
}
