/** The workstation's side of volume mounts: sshfs over a ByteStream, and cleaning up after a daemon that died. */
export { MountError, type MountErrorCode } from "./errors.ts";
export { mountSshfs, type MountUser, SshfsMount, type SshfsOptions } from "./sshfs.ts";
export { listMounts, type MountListing, type MountState, type Repaired, repairMounts } from "./repair.ts";
export { type UnmountResult } from "./unmount.ts";
