/**
 * The API server double's routing: a request's path and method to an answer. Discovery paths get their bodies from
 * k8s_apiserver_discovery.ts; a resource path (/api/v1/... or /apis/{group}/{version}/..., namespaced or not) is parsed
 * once into a `Target`, its verb is authorized in RBAC's words, and one function per verb (list, watch, get, delete,
 * create, update and patch) answers it through `DoubleApi`, the few things it needs of the double's store. Failures
 * are thrown as HttpError with kube-apiserver's Status.
 */
import { JsonPatchError } from "../k8s/json_patch.ts";
import { apiGroupList, apiResourceList, apiVersions, versionInfo } from "./k8s_apiserver_discovery.ts";
import type { Identity } from "./k8s_apiserver_http.ts";
import { type Access, matches, type Obj, parseSelector, type ResourceDef, RESOURCES } from "./k8s_apiserver_objects.ts";
import { patched } from "./k8s_apiserver_patch.ts";
import { forbidden, HttpError, invalid, status } from "./k8s_apiserver_status.ts";

/** What the routes use of the double. */
export interface DoubleApi {
  /** host:port, for /api's server address. */
  host: string;
  gitVersion: string;
  authorize(a: Access): boolean;
  get(plural: string, namespace: string | undefined, name: string): Obj | undefined;
  list(plural: string, namespace?: string): Obj[];
  remove(plural: string, namespace: string | undefined, name: string): boolean;
  /** The latest resourceVersion, a list's. */
  resourceVersion(): string;
  /** Stores an object a client created (kind and apiVersion set, not yet defaulted). */
  create(def: ResourceDef, obj: Obj): void;
  /** Stores `next` in place of `old`; returns what is stored. */
  update(def: ResourceDef, old: Obj, next: Obj): Obj;
}

/** A watch the double is to stream: the objects of `def` in `namespace` (undefined: all) that `selector` matches. */
export interface WatchRequest {
  def: ResourceDef;
  namespace: string | undefined;
  selector: [string, string][];
}

export interface ApiRequest {
  method: string;
  url: URL;
  body: string;
  who: Identity;
  contentType: string;
}

export type RouteResult = { status: number; body: unknown } | { watch: WatchRequest };

/** What a resource path names. `namespace` is the path's, even for a cluster-scoped kind. */
interface Target {
  def: ResourceDef;
  group: string;
  version: string;
  namespace: string | undefined;
  name: string | undefined;
}

const NOT_FOUND = "the server could not find the requested resource";

/** The answer to one authenticated request. */
export function route(req: ApiRequest, api: DoubleApi): RouteResult {
  const p = req.url.pathname.replace(/\/$/, "");
  if (p === "/version") return { status: 200, body: versionInfo(api.gitVersion) };
  if (p === "/api") return { status: 200, body: apiVersions(api.host) };
  if (p === "/apis") return { status: 200, body: apiGroupList() };
  const m = p.match(/^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))(?:\/(.*))?$/);
  if (!m) throw new HttpError(404, status(404, "NotFound", NOT_FOUND));
  const group = m[2] ?? "";
  const version = m[1] ?? m[3]!;
  const rest = m[4] ? m[4].split("/") : [];
  if (rest.length === 0) return { status: 200, body: apiResourceList(group, version) };
  const t = target(group, version, rest);
  const watch = req.url.searchParams.get("watch") === "true" || req.url.searchParams.get("watch") === "1";
  const verb = verbOf(req.method, t.name, watch);
  const access: Access = { ...req.who, verb, resource: t.def.plural, group, namespace: t.namespace, name: t.name };
  if (!api.authorize(access)) throw new HttpError(403, forbidden(access, t.def));
  if (req.contentType.includes("protobuf")) {
    // kubectl's typed commands (`kubectl create secret generic`) send protobuf; this double reads JSON only.
    throw new HttpError(
      415,
      status(415, "UnsupportedMediaType", "the API server test double reads JSON request bodies only, not protobuf"),
    );
  }
  const selector = parseSelector(req.url.searchParams.get("labelSelector") ?? "");
  if (verb === "list") return list(t, selector, api);
  if (verb === "watch") return { watch: { def: t.def, namespace: scoped(t), selector } };
  if (verb === "get") return { status: 200, body: existing(t, api) };
  if (verb === "delete") return remove(t, api);
  if (verb === "create") return create(t, req.body, api);
  if (verb === "update" || verb === "patch") return replace(t, verb, req, api);
  throw new HttpError(405, status(405, "MethodNotAllowed", `${req.method} is not supported by this test double`));
}

/** The Target of a resource path's segments after the group version: [namespaces, ns,] plural [, name]. */
function target(group: string, version: string, rest: string[]): Target {
  let namespace: string | undefined;
  let segs = rest;
  if (segs[0] === "namespaces" && segs.length >= 3) {
    namespace = segs[1];
    segs = segs.slice(2);
  }
  const def = RESOURCES.find((r) => r.group === group && r.version === version && r.plural === segs[0]);
  if (!def || segs.length > 2) throw new HttpError(404, status(404, "NotFound", NOT_FOUND));
  return { def, group, version, namespace, name: segs[1] };
}

/** RBAC's verb for a request. */
function verbOf(method: string, name: string | undefined, watch: boolean): string {
  return method === "GET"
    ? (name ? "get" : watch ? "watch" : "list")
    : method === "POST"
    ? "create"
    : method === "DELETE"
    ? "delete"
    : method === "PUT"
    ? "update"
    : method.toLowerCase();
}

/** The namespace the store keys the target's objects by: the path's, for a namespaced kind only. */
function scoped(t: Target): string | undefined {
  return t.def.namespaced ? t.namespace : undefined;
}

/** The group resource as kube-apiserver's messages name it ("deployments.apps", "pods"). */
function groupResource(t: Target): string {
  return t.group ? `${t.def.plural}.${t.group}` : t.def.plural;
}

function apiVersion(t: Target): string {
  return t.group ? `${t.group}/${t.version}` : t.version;
}

function list(t: Target, selector: [string, string][], api: DoubleApi): RouteResult {
  const items = api.list(t.def.plural, scoped(t)).filter((o) => matches(o, selector));
  return {
    status: 200,
    body: {
      kind: `${t.def.kind}List`,
      apiVersion: apiVersion(t),
      metadata: { resourceVersion: api.resourceVersion() },
      items: items.map((o) => ({ ...o, apiVersion: apiVersion(t), kind: t.def.kind })),
    },
  };
}

/** The named object, or kube-apiserver's 404. */
function existing(t: Target, api: DoubleApi): Obj {
  const obj = api.get(t.def.plural, scoped(t), t.name!);
  if (obj) return obj;
  const { name, group } = t;
  throw new HttpError(
    404,
    status(404, "NotFound", `${groupResource(t)} "${name}" not found`, { name, kind: t.def.plural, group }),
  );
}

function remove(t: Target, api: DoubleApi): RouteResult {
  const obj = existing(t, api);
  api.remove(t.def.plural, scoped(t), t.name!);
  return { status: 200, body: obj };
}

function create(t: Target, body: string, api: DoubleApi): RouteResult {
  const { def, namespace, group } = t;
  let obj: Obj;
  try {
    obj = JSON.parse(body);
  } catch {
    throw new HttpError(400, status(400, "BadRequest", "the request body is not JSON"));
  }
  obj.metadata ??= {};
  if (def.namespaced) obj.metadata.namespace ??= namespace;
  const objName = obj.metadata.name as string | undefined;
  if (!objName) {
    throw new HttpError(422, invalid(def.kind, "", "metadata.name", "Required value: name is required"));
  }
  if (def.namespaced && namespace !== "default" && !api.get("namespaces", undefined, namespace!)) {
    throw new HttpError(
      404,
      status(404, "NotFound", `namespaces "${namespace}" not found`, { name: namespace, kind: "namespaces" }),
    );
  }
  if (api.get(def.plural, scoped(t), objName)) {
    throw new HttpError(
      409,
      status(409, "AlreadyExists", `${groupResource(t)} "${objName}" already exists`, {
        name: objName,
        kind: def.plural,
        group,
      }),
    );
  }
  obj.apiVersion = apiVersion(t);
  obj.kind = def.kind;
  api.create(def, obj);
  return { status: 201, body: obj };
}

/** PUT (`update`) or PATCH (`patch`): the new object checked as kube-apiserver checks it, then stored. */
function replace(t: Target, verb: "update" | "patch", req: ApiRequest, api: DoubleApi): RouteResult {
  const { def, name, group } = t;
  const old = existing(t, api);
  let next: Obj;
  try {
    next = verb === "update" ? JSON.parse(req.body) : patched(old, req.body, req.contentType);
  } catch (e) {
    if (e instanceof HttpError) throw e;
    if (e instanceof JsonPatchError) {
      // kube-apiserver answers a JSON patch that does not apply with 422 and the patch library's words.
      throw new HttpError(422, status(422, "Invalid", e.message));
    }
    throw new HttpError(400, status(400, "BadRequest", "the request body is not JSON"));
  }
  if (!next || typeof next !== "object" || !next.metadata || typeof next.metadata !== "object") {
    throw new HttpError(400, status(400, "BadRequest", "the request body is not an object with metadata"));
  }
  if (next.metadata.name !== undefined && next.metadata.name !== name) {
    throw new HttpError(
      400,
      status(
        400,
        "BadRequest",
        `the name of the object (${String(next.metadata.name)}) does not match the name ` +
          `on the URL (${name})`,
      ),
    );
  }
  const rv = next.metadata.resourceVersion;
  if (rv !== undefined && rv !== old.metadata.resourceVersion) {
    throw new HttpError(
      409,
      status(
        409,
        "Conflict",
        `Operation cannot be fulfilled on ${groupResource(t)} "${name}": the object has been modified; please apply ` +
          `your changes to the latest version and try again`,
        { name, kind: def.plural, group },
      ),
    );
  }
  return { status: 200, body: api.update(def, old, next) };
}
