/**
 * The OS side of tp's DNS: pointing the system at tp (resolv.conf or systemd-resolved), asking the original
 * nameservers. The DNS logic itself is in `net/dns/`.
 */
export {
  type Nameserver,
  type NameserverForwarder,
  nameserverForwarder,
  type NameserverForwarderOptions,
} from "./forwarder.ts";
export {
  applyResolvConf,
  type ApplyResult,
  parseResolvConf,
  pidAlive,
  repairResolvConf,
  type ResolvConf,
  restoreResolvConf,
  type RestoreResult,
  rewriteResolvConf,
} from "./resolv_conf.ts";
export {
  applyResolved,
  configureResolved,
  detectResolved,
  type LinkDnsSettings,
  resolvedApplyCommands,
  type ResolvedDetection,
  type ResolvedLink,
  type ResolvedLinkOptions,
  resolvedRevertCommands,
  resolvedUpstreams,
  type ResolvedVia,
  revertResolved,
} from "./resolved.ts";
