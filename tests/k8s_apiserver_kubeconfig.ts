/**
 * A kubeconfig (YAML, written as JSON) for the API server double at a URL: the cluster by CA data, CA file or no
 * verification, and one user, by token, client certificate or exec plugin. Pure: a function of the URL and the PKI.
 */
import type { TestPki } from "./k8s_certs.ts";

export interface KubeconfigOptions {
  context?: string;
  namespace?: string;
  token?: string;
  clientCert?: { certFile: string; keyFile: string };
  exec?: { command: string; args: string[] };
  caFile?: boolean;
  insecure?: boolean;
}

/** A kubeconfig for the double at `url`: a token user, a client-certificate user, or an exec plugin user. */
export function kubeconfig(url: string, pki: TestPki, o: KubeconfigOptions): string {
  const context = o.context ?? "lab";
  const cluster = o.insecure
    ? { server: url, "insecure-skip-tls-verify": true }
    : o.caFile
    ? { server: url, "certificate-authority": pki.caFile }
    : { server: url, "certificate-authority-data": btoa(pki.caCert) };
  const user = o.clientCert
    ? { "client-certificate": o.clientCert.certFile, "client-key": o.clientCert.keyFile }
    : o.exec
    ? {
      exec: {
        apiVersion: "client.authentication.k8s.io/v1",
        command: o.exec.command,
        args: o.exec.args,
        interactiveMode: "Never",
      },
    }
    : { token: o.token ?? "" };
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "double", cluster }],
    users: [{ name: "tester", user }],
    contexts: [{
      name: context,
      context: { cluster: "double", user: "tester", ...(o.namespace ? { namespace: o.namespace } : {}) },
    }],
    "current-context": context,
  });
}
