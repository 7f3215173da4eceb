/**
 * Throwaway PKI for the API server test double: a CA, a server certificate for loopback and the lab's cluster
 * address, and client certificates, made by openssl in a temporary folder (EC P-256, valid one day).
 */
import { requireTools } from "./lab.ts";

export interface TestPki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  /** Makes a client certificate for user `cn` (groups as O=), signed by the CA. */
  clientCert(cn: string, groups?: string[]): { cert: string; key: string; certFile: string; keyFile: string };
  /** Files for kubeconfigs that name files rather than data. */
  caFile: string;
  remove(): void;
}

function openssl(dir: string, args: string[]): void {
  const r = new Deno.Command("openssl", { args, cwd: dir, stdout: "piped", stderr: "piped" }).outputSync();
  if (r.code !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${new TextDecoder().decode(r.stderr)}`);
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

export function makePki(sans: string[] = ["IP:127.0.0.1", "DNS:localhost", "IP:198.18.0.2"]): TestPki {
  requireTools("openssl");
  const dir = Deno.makeTempDirSync({ prefix: "tp-k8s-pki-" });
  openssl(dir, ["req", "-x509", ...EC, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=tp-test-ca", "-days", "1"]);
  openssl(dir, ["req", ...EC, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=kube-apiserver"]);
  Deno.writeTextFileSync(`${dir}/server.ext`, `subjectAltName=${sans.join(",")}\n`);
  openssl(dir, [
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.crt",
    "-days",
    "1",
    "-extfile",
    "server.ext",
  ]);
  const read = (f: string) => Deno.readTextFileSync(`${dir}/${f}`);
  let n = 0;
  return {
    dir,
    caCert: read("ca.crt"),
    caFile: `${dir}/ca.crt`,
    serverCert: read("server.crt"),
    serverKey: read("server.key"),
    clientCert(cn, groups = []) {
      const base = `client${n++}`;
      const subj = `/CN=${cn}${groups.map((g) => `/O=${g}`).join("")}`;
      openssl(dir, ["req", ...EC, "-keyout", `${base}.key`, "-out", `${base}.csr`, "-subj", subj]);
      openssl(dir, [
        "x509",
        "-req",
        "-in",
        `${base}.csr`,
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        `${base}.crt`,
        "-days",
        "1",
      ]);
      return {
        cert: read(`${base}.crt`),
        key: read(`${base}.key`),
        certFile: `${dir}/${base}.crt`,
        keyFile: `${dir}/${base}.key`,
      };
    },
    remove() {
      Deno.removeSync(dir, { recursive: true });
    },
  };
}
