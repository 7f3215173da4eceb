/**
 * The API server double's PATCH: the object a patch body makes of the stored one, by its content type. JSON patch
 * (RFC 6902, what tp sends) goes through k8s/json_patch.ts; JSON merge patch (RFC 7386, `kubectl patch --type merge`)
 * is here; anything else (strategic merge, apply) gets kube-apiserver's 415, as for a custom resource. Pure.
 */
import { applyJsonPatch, type JsonPatchOp } from "../k8s/json_patch.ts";
import type { Obj } from "./k8s_apiserver_objects.ts";
import { HttpError, status } from "./k8s_apiserver_status.ts";

/** The object after a PATCH, by its content type. */
export function patched(old: Obj, body: string, contentType: string): Obj {
  const type = contentType.split(";")[0]!.trim().toLowerCase();
  if (type === "application/json-patch+json") {
    const ops = JSON.parse(body) as JsonPatchOp[];
    if (!Array.isArray(ops)) throw new HttpError(400, status(400, "BadRequest", "a JSON patch must be an array"));
    return applyJsonPatch(old, ops);
  }
  if (type === "application/merge-patch+json") return mergePatch(structuredClone(old), JSON.parse(body)) as Obj;
  // kube-apiserver's words for a patch type a resource does not take (as for a custom resource's strategic merge).
  throw new HttpError(
    415,
    status(
      415,
      "UnsupportedMediaType",
      `the body of the request was in an unknown format - accepted media types include: ` +
        `application/json-patch+json, application/merge-patch+json`,
    ),
  );
}

/** JSON merge patch (RFC 7386 section 2): objects merge member by member, null removes, anything else replaces. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== "object" || patch === null || Array.isArray(patch)) return patch;
  const out = (typeof target === "object" && target !== null && !Array.isArray(target) ? target : {}) as Record<
    string,
    unknown
  >;
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}
