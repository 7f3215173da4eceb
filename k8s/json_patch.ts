/**
 * JSON Patch (RFC 6902), the patch type tp sends to the API server (`application/json-patch+json`): it names each
 * change by path, so tp changes exactly the fields it means to, and its `test` operations make a patch fail instead
 * of overwriting what someone else changed since tp read the object. kube-apiserver applies it with
 * github.com/evanphx/json-patch; `applyJsonPatch` applies it the same way, for tp's unit tests (what an injection
 * plan does to an object) and the API server test double.
 */

export type JsonPatchOp =
  | { op: "add"; path: string; value: unknown }
  | { op: "remove"; path: string }
  | { op: "replace"; path: string; value: unknown }
  | { op: "move"; from: string; path: string }
  | { op: "copy"; from: string; path: string }
  | { op: "test"; path: string; value: unknown };

/** A patch that cannot apply: a `test` that does not hold, a path that does not exist. */
export class JsonPatchError extends Error {
  override name = "JsonPatchError";
  constructor(message: string, readonly testFailed = false) {
    super(message);
  }
}

/** One path segment escaped per RFC 6901 section 3 ("~" as "~0", "/" as "~1"). */
export function pointerSegment(key: string | number): string {
  return String(key).replaceAll("~", "~0").replaceAll("/", "~1");
}

/** A JSON pointer from segments: `pointer("metadata", "annotations", "tp.dev/agent")`. */
export function pointer(...segments: (string | number)[]): string {
  return segments.map((s) => "/" + pointerSegment(s)).join("");
}

function parsePointer(path: string): string[] {
  if (path === "") return [];
  if (!path.startsWith("/")) throw new JsonPatchError(`Cannot parse JSON pointer "${path}"`);
  return path.slice(1).split("/").map((s) => s.replaceAll("~1", "/").replaceAll("~0", "~"));
}

type Container = Record<string, unknown> | unknown[];

function isContainer(v: unknown): v is Container {
  return typeof v === "object" && v !== null;
}

/** The container that holds the path's last segment, and that segment. */
function parent(doc: unknown, path: string): { holder: Container; key: string } {
  const segs = parsePointer(path);
  const key = segs.pop();
  if (key === undefined) throw new JsonPatchError(`Cannot operate on the whole document ("${path}")`);
  let cur: unknown = doc;
  for (const s of segs) {
    cur = child(cur, s, path);
  }
  if (!isContainer(cur)) throw new JsonPatchError(`Path "${path}" does not exist`);
  return { holder: cur, key };
}

function child(cur: unknown, s: string, path: string): unknown {
  if (Array.isArray(cur)) {
    const i = arrayIndex(s, cur.length - 1, path);
    return cur[i];
  }
  if (!isContainer(cur) || !Object.hasOwn(cur, s)) throw new JsonPatchError(`Path "${path}" does not exist`);
  return (cur as Record<string, unknown>)[s];
}

function arrayIndex(s: string, max: number, path: string): number {
  if (!/^(0|[1-9][0-9]*)$/.test(s)) throw new JsonPatchError(`Path "${path}": "${s}" is not an array index`);
  const i = Number(s);
  if (i > max) throw new JsonPatchError(`Path "${path}": index ${i} is out of range`);
  return i;
}

function get(doc: unknown, path: string): unknown {
  let cur = doc;
  for (const s of parsePointer(path)) cur = child(cur, s, path);
  return cur;
}

function add(doc: unknown, path: string, value: unknown): unknown {
  if (path === "") return value;
  const { holder, key } = parent(doc, path);
  if (Array.isArray(holder)) {
    const i = key === "-" ? holder.length : arrayIndex(key, holder.length, path);
    holder.splice(i, 0, value);
  } else {
    holder[key] = value;
  }
  return doc;
}

function remove(doc: unknown, path: string): unknown {
  const { holder, key } = parent(doc, path);
  if (Array.isArray(holder)) {
    holder.splice(arrayIndex(key, holder.length - 1, path), 1);
  } else {
    if (!Object.hasOwn(holder, key)) throw new JsonPatchError(`Path "${path}" does not exist`);
    delete holder[key];
  }
  return doc;
}

function replace(doc: unknown, path: string, value: unknown): unknown {
  if (path === "") return value;
  const { holder, key } = parent(doc, path);
  if (Array.isArray(holder)) {
    holder[arrayIndex(key, holder.length - 1, path)] = value;
  } else {
    if (!Object.hasOwn(holder, key)) throw new JsonPatchError(`Path "${path}" does not exist`);
    holder[key] = value;
  }
  return doc;
}

/** Deep equality of JSON values (object key order does not matter, array order does). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (!isContainer(a) || !isContainer(b) || Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((v, i) => jsonEqual(v, bb[i]));
  }
  const ka = Object.keys(a);
  const rb = b as Record<string, unknown>;
  return ka.length === Object.keys(rb).length &&
    ka.every((k) => Object.hasOwn(rb, k) && jsonEqual((a as Record<string, unknown>)[k], rb[k]));
}

/**
 * Applies `ops` to a copy of `doc` and returns the copy; `doc` is never changed. All or nothing: the first operation
 * that cannot apply throws a JsonPatchError (`testFailed` when a `test` did not hold).
 */
export function applyJsonPatch<T>(doc: T, ops: readonly JsonPatchOp[]): T {
  let out: unknown = structuredClone(doc);
  for (const op of ops) {
    switch (op.op) {
      case "add":
        out = add(out, op.path, structuredClone(op.value));
        break;
      case "remove":
        out = remove(out, op.path);
        break;
      case "replace":
        out = replace(out, op.path, structuredClone(op.value));
        break;
      case "move": {
        const v = get(out, op.from);
        out = add(remove(out, op.from), op.path, v);
        break;
      }
      case "copy":
        out = add(out, op.path, structuredClone(get(out, op.from)));
        break;
      case "test": {
        const actual = get(out, op.path);
        if (!jsonEqual(actual, op.value)) {
          throw new JsonPatchError(
            `test failed: "${op.path}" is ${JSON.stringify(actual)}, not ${JSON.stringify(op.value)}`,
            true,
          );
        }
        break;
      }
      default: {
        const never: never = op;
        throw new JsonPatchError(`Unknown JSON patch operation ${JSON.stringify(never)}`);
      }
    }
  }
  return out as T;
}
