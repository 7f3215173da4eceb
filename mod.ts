/**
 * tp's public API, for programs that embed it. The command line (`cli/main.ts`) is built on the same surface.
 *
 * Layers, lowest first (lower layers never import higher ones):
 * - `base/`: what every layer may import (the version, `errorMessage`, `concat`), importing nothing of tp.
 * - `net/wire/`: packet codecs and addresses (text <-> address and prefix), pure: it imports nothing else of tp,
 *   so `ffi/` builds its rtnetlink requests with it.
 * - `ffi/`: OS calls (TUN device, rtnetlink) through Deno FFI.
 * - `net/tcp/`, `net/udp/`: the userspace TCP and UDP endpoints; `net/router/`, which terminates them on the device.
 * - `proto/`: the gRPC-web protocol between tp and the traffic-manager.
 * - `k8s/`: Kubernetes client code (kubeconfig, REST, port-forward, manifests), shared by the CLI and the manager.
 * - `manager/`: the traffic-manager (`tp manager`), in the cluster.
 * - `agent/`: the traffic-agent (`tp agent`) beside an intercepted app; it reuses the manager's DNS forwarder.
 * - `cli/`: the `tp` command.
 * tests/import_graph_test.ts holds the code to this order, with no import cycle and no module only tests reach.
 */
export { VERSION } from "./base/version.ts";
export { main, program } from "./cli/main.ts";
export type { TcpRepr } from "./net/wire/tcp_repr.ts";
export { TcpFlags } from "./net/wire/tcp_repr.ts";
