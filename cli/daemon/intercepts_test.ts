import assert from "node:assert/strict";
import { DaemonIntercepts } from "./intercepts.ts";
import type { ManagerSession } from "../../proto/mod.ts";
import type { InterceptInfo } from "../../proto/messages.ts";

/**
 * A session double holding the manager's intercept table. `perPort: false` is a manager that predates
 * RemoveInterceptRequest.app_port: it skips the field and ends every port of the workload.
 */
function fakeSession(opts: { perPort: boolean; hold?: boolean }) {
  const table = new Map<string, InterceptInfo>();
  /** With `hold`: the creates waiting for the test to let them reach the manager's table. */
  const held: (() => void)[] = [];
  let stop!: () => void;
  const stopped = new Promise<void>((r) => (stop = r));
  const session = {
    closed: false,
    createIntercept: (workload: string, appPort: number, localPort: number) => {
      const info: InterceptInfo = {
        id: `${workload}:${appPort}`,
        namespace: "default",
        workload,
        appPort,
        localPort,
        clientName: "laptop",
        podName: `${workload}-0`,
        podIp: "198.18.0.9",
        env: {},
        mounts: [],
      };
      const made = () => (table.set(info.id, info), info);
      return opts.hold ? new Promise<InterceptInfo>((r) => held.push(() => r(made()))) : Promise.resolve(made());
    },
    removeIntercept: (workload: string, appPort = 0) => {
      let n = 0;
      for (const [id, i] of table) {
        if ((!workload || i.workload === workload) && (!opts.perPort || !appPort || i.appPort === appPort)) {
          table.delete(id);
          n++;
        }
      }
      return Promise.resolve(n);
    },
    // Announces nothing until the test ends.
    watchInterceptConnections: (): AsyncIterable<never> => ({
      [Symbol.asyncIterator]: () => ({ next: () => stopped.then(() => ({ done: true as const, value: undefined })) }),
    }),
  };
  return { session: session as unknown as ManagerSession, table, held, stop };
}

for (const perPort of [true, false]) {
  Deno.test(
    `DaemonIntercepts.leave(W, port) leaves tp's view of W as the manager left it (${
      perPort ? "per-port" : "a manager that ends every port"
    })`,
    async () => {
      const { session, table, stop } = fakeSession({ perPort });
      const log: string[] = [];
      const intercepts = new DaemonIntercepts((l) => log.push(l), {
        stateDir: "/nonexistent",
        user: { uid: 0, gid: 0 },
      });
      try {
        intercepts.attach(session);
        await intercepts.create("web", 8080, 3000);
        await intercepts.create("web", 9090, 3001);
        await intercepts.leave("web", 8080);
        const atManager = [...table.values()].map((i) => i.appPort).sort();
        const here = intercepts.status().map((i) => i.appPort).sort();
        assert.deepEqual(here, atManager, `tp status shows what the manager holds\n${log.join("\n")}`);
        if (!perPort) assert.ok(log.some((l) => /every intercept of web/.test(l)), log.join("\n"));
      } finally {
        stop();
      }
    },
  );
}

async function until(what: string, f: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !f(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(f(), `timed out waiting for ${what}`);
}

Deno.test("DaemonIntercepts: tp leave while a reconnect makes the intercept again leaves nothing at the manager", async () => {
  const first = fakeSession({ perPort: true });
  const second = fakeSession({ perPort: true, hold: true });
  const intercepts = new DaemonIntercepts(() => {}, { stateDir: "/nonexistent", user: { uid: 0, gid: 0 } });
  try {
    intercepts.attach(first.session);
    await intercepts.create("web", 8080, 3000);
    intercepts.attach(second.session); // the link came back: web is intercepted again, its create in flight
    await until("the create in flight", () => second.held.length === 1);
    assert.equal(await intercepts.leave("web"), 0); // the user leaves before the manager answered
    second.held[0]!();
    await until("the late intercept removed", () => second.table.size === 0);
    assert.deepEqual(intercepts.status(), []);
  } finally {
    first.stop();
    second.stop();
  }
});

Deno.test("DaemonIntercepts: a connection announced as the link breaks resets the local app's end, and nothing throws", async () => {
  // A real local app (a listener on 127.0.0.1); a session double whose watch announces one connection and whose
  // joinIntercept throws, as the real one does once the connection to the manager has closed.
  const app = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const localPort = (app.addr as Deno.NetAddr).port;
  let stop!: () => void;
  const stopped = new Promise<void>((r) => (stop = r));
  let announced = false;
  const session = {
    closed: false,
    watchInterceptConnections: (): AsyncIterable<unknown> => ({
      [Symbol.asyncIterator]: () => ({
        next: () =>
          announced
            ? stopped.then(() => ({ done: true as const, value: undefined }))
            : (announced = true,
              Promise.resolve({
                done: false as const,
                value: { connectionId: "c1", localPort, source: { ip: "198.18.0.9", port: 40000 } },
              })),
      }),
    }),
    joinIntercept: () => {
      throw new Error("Connection to the manager is closed");
    },
  } as unknown as ManagerSession;
  const log: string[] = [];
  const intercepts = new DaemonIntercepts((l) => log.push(l), { stateDir: "/nonexistent", user: { uid: 0, gid: 0 } });
  try {
    intercepts.attach(session);
    const conn = await app.accept();
    // The app's end is reset or closed: a read ends (null or a reset error), bounded by the test's own timeout.
    const ended = await conn.read(new Uint8Array(16)).then((n) => `eof ${n}`, (e) => `error ${(e as Error).name}`);
    assert.match(ended, /^(eof null|error ConnectionReset)$/);
    conn.close();
    await until(
      "the log line",
      () => log.some((l) => /cannot join it \(Connection to the manager is closed\)/.test(l)),
    );
    assert.equal(intercepts.stats.open, 0);
  } finally {
    stop();
    app.close();
  }
});
