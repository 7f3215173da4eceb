import assert from "node:assert/strict";
import { applyJsonPatch, JsonPatchError, type JsonPatchOp, pointer } from "./json_patch.ts";

// Examples from RFC 6902 appendix A.
Deno.test("applyJsonPatch() adds an object member and inserts into an array (RFC 6902 A.1, A.2)", () => {
  assert.deepEqual(applyJsonPatch({ foo: "bar" }, [{ op: "add", path: "/baz", value: "qux" }]), {
    foo: "bar",
    baz: "qux",
  });
  assert.deepEqual(applyJsonPatch({ foo: ["bar", "baz"] }, [{ op: "add", path: "/foo/1", value: "qux" }]), {
    foo: ["bar", "qux", "baz"],
  });
  assert.deepEqual(applyJsonPatch({ foo: [1] }, [{ op: "add", path: "/foo/-", value: 2 }]), { foo: [1, 2] });
});

Deno.test("applyJsonPatch() removes, replaces, moves and copies (RFC 6902 A.3 to A.7)", () => {
  assert.deepEqual(applyJsonPatch({ baz: "qux", foo: "bar" }, [{ op: "remove", path: "/baz" }]), { foo: "bar" });
  assert.deepEqual(applyJsonPatch({ foo: ["bar", "qux", "baz"] }, [{ op: "remove", path: "/foo/1" }]), {
    foo: ["bar", "baz"],
  });
  assert.deepEqual(applyJsonPatch({ baz: "qux", foo: "bar" }, [{ op: "replace", path: "/baz", value: "boo" }]), {
    baz: "boo",
    foo: "bar",
  });
  assert.deepEqual(
    applyJsonPatch({ foo: { bar: "baz", waldo: "fred" }, qux: { corge: "grault" } }, [
      { op: "move", from: "/foo/waldo", path: "/qux/thud" },
    ]),
    { foo: { bar: "baz" }, qux: { corge: "grault", thud: "fred" } },
  );
  assert.deepEqual(applyJsonPatch({ a: [1] }, [{ op: "copy", from: "/a", path: "/b" }]), { a: [1], b: [1] });
});

Deno.test("applyJsonPatch() is all or nothing: a failed test leaves the document as it was (RFC 6902 A.9)", () => {
  const doc = { baz: "qux", n: 1 };
  const ops: JsonPatchOp[] = [{ op: "replace", path: "/n", value: 2 }, { op: "test", path: "/baz", value: "bar" }];
  assert.throws(() => applyJsonPatch(doc, ops), (e) => e instanceof JsonPatchError && e.testFailed);
  assert.deepEqual(doc, { baz: "qux", n: 1 });
  assert.deepEqual(applyJsonPatch(doc, [{ op: "test", path: "/baz", value: "qux" }]), doc);
});

Deno.test("applyJsonPatch() refuses paths that do not exist and out-of-range indexes", () => {
  assert.throws(() => applyJsonPatch({}, [{ op: "remove", path: "/a" }]), JsonPatchError);
  assert.throws(() => applyJsonPatch({}, [{ op: "add", path: "/a/b", value: 1 }]), JsonPatchError);
  assert.throws(() => applyJsonPatch({ a: [] }, [{ op: "add", path: "/a/1", value: 1 }]), JsonPatchError);
  assert.throws(() => applyJsonPatch({ a: [1] }, [{ op: "replace", path: "/a/01", value: 1 }]), JsonPatchError);
});

Deno.test("pointer() escapes ~ and / per RFC 6901 (an annotation key holds a /)", () => {
  assert.equal(pointer("metadata", "annotations", "tp.dev/agent"), "/metadata/annotations/tp.dev~1agent");
  assert.equal(pointer("a~b", 0), "/a~0b/0");
  const doc = { metadata: { annotations: { "tp.dev/agent": "x", "a~b": "y" } } };
  assert.deepEqual(
    applyJsonPatch(doc, [
      { op: "remove", path: pointer("metadata", "annotations", "tp.dev/agent") },
      { op: "remove", path: pointer("metadata", "annotations", "a~b") },
    ]),
    { metadata: { annotations: {} } },
  );
});
