/**
 * Shared set-up for the Kubernetes tests: one throwaway PKI per process, an API server double with a traffic-manager
 * pod, a TCP echo to forward to, and kubeconfig files the tests write.
 */
import { Buffer } from "node:buffer";
import net from "node:net";
import { ApiServerDouble, type ApiServerDoubleOptions } from "./k8s_apiserver_double.ts";
import { makePki, type TestPki } from "./k8s_certs.ts";

let pki: TestPki | undefined;

/** The process's test PKI (made on first use; its folder is removed at exit). */
export function testPki(): TestPki {
  if (!pki) {
    pki = makePki();
    globalThis.addEventListener("unload", () => pki?.remove());
  }
  return pki;
}

export const TOKEN = "token-alice";
export const MANAGER_LABELS = { "app.kubernetes.io/name": "tp-manager" };

/** A TCP echo server on loopback. */
export async function startEcho(): Promise<{ port: number; close(): Promise<void>; connections: number }> {
  const sockets = new Set<net.Socket>();
  const state = { connections: 0 };
  const server = net.createServer((s) => {
    state.connections++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    get connections() {
      return state.connections;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

export interface Fixture {
  double: ApiServerDouble;
  echo: Awaited<ReturnType<typeof startEcho>>;
  dir: string;
  /** Writes a kubeconfig for the double and returns its path. */
  kubeconfig(o?: Parameters<ApiServerDouble["kubeconfig"]>[0], name?: string): string;
  close(): Promise<void>;
}

/** A double (token TOKEN for alice) with a ready manager pod in namespace tp, forwarding to a fresh echo. */
export async function fixture(o: Partial<ApiServerDoubleOptions> & { managerPod?: boolean } = {}): Promise<Fixture> {
  const echo = await startEcho();
  const double = await ApiServerDouble.start({
    pki: testPki(),
    tokens: { [TOKEN]: "alice" },
    portForwardTarget: () => ({ host: "127.0.0.1", port: echo.port }),
    ...o,
  });
  if (o.managerPod ?? true) double.put({ apiVersion: "v1", kind: "Namespace", metadata: { name: "tp" } });
  if (o.managerPod ?? true) double.addPod("tp", "tp-manager-6d5f", { labels: MANAGER_LABELS, ports: [8081] });
  const dir = Deno.makeTempDirSync({ prefix: "tp-k8s-test-" });
  let n = 0;
  return {
    double,
    echo,
    dir,
    kubeconfig(k = { token: TOKEN }, name = `kubeconfig-${n++}`) {
      const path = `${dir}/${name}`;
      Deno.writeTextFileSync(path, double.kubeconfig(k));
      return path;
    },
    async close() {
      await double.close();
      await echo.close();
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

/** SHA-256 of bytes, hex. */
export async function sha256(data: Uint8Array): Promise<string> {
  return Buffer.from(await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>)).toString("hex");
}
