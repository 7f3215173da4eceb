/** Why a volume mount failed; `message` is one line that names the fix. */
export type MountErrorCode =
  | "no-sshfs" // sshfs is not installed on the workstation
  | "no-fuse" // no /dev/fuse (module not loaded, or a container without the device)
  | "no-tool" // mount, umount or setpriv (util-linux) missing
  | "not-root" // mounting for another user needs root (tp's daemon runs as root)
  | "mount-point" // the mount point is not an empty directory, or is a mount already
  | "mount-failed" // mount(8) refused, or sshfs exited before the mount answered
  | "agent"; // the agent's side ended the stream (no sftp-server there, say): its reason follows

export class MountError extends Error {
  override name = "MountError";
  constructor(readonly code: MountErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
  }
}
