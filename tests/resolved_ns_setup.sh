#!/usr/bin/env bash
# Run by tests/resolved_ns.ts through `nsenter --mount --net` into a PRIVATE mount namespace made inside the lab's
# workstation namespace: makes it look like a machine where systemd-resolved runs, without touching the host.
#   - a tmpfs over /run (so /run/dbus and /run/systemd are the namespace's own);
#   - an overlay over /etc, its upper layer on that tmpfs holding: passwd and group with the `systemd-resolve` system
#     user (resolved drops to it), resolv.conf as a symlink to resolved's stub-resolv.conf (as on Ubuntu), and
#     systemd/resolved.conf naming the workstation's nameserver.
# Nothing is written under /etc itself: the files go to the upper layer before the overlay is mounted, so if a mount
# fails nothing of the host has changed.
# Arguments: the test's own mount namespace (readlink /proc/self/ns/mnt; refused if this is it), the workstation's
# nameserver, its search domain.
set -euo pipefail
outer_mnt=$1 dns=$2 domain=$3
if [ "$(readlink /proc/self/ns/mnt)" = "$outer_mnt" ]; then
  echo "resolved_ns_setup: not in a private mount namespace: refusing to mount anything" >&2
  exit 1
fi
mount -t tmpfs -o mode=0755 tp-resolved /run
upper=/run/tp-etc/upper
mkdir -p "$upper/systemd" /run/tp-etc/work /run/dbus /run/systemd
cp /etc/passwd /etc/group "$upper/"
if ! grep -q '^systemd-resolve:' "$upper/passwd"; then
  id=989 # a system uid; the next free one below it if taken
  while cut -d: -f3 "$upper/passwd" | grep -qx "$id" || cut -d: -f3 "$upper/group" | grep -qx "$id"; do
    id=$((id - 1))
  done
  echo "systemd-resolve:x:$id:$id:systemd Resolver:/:/usr/sbin/nologin" >>"$upper/passwd"
  echo "systemd-resolve:x:$id:" >>"$upper/group"
fi
ln -s /run/systemd/resolve/stub-resolv.conf "$upper/resolv.conf"
# LLMNR and mDNS off: single-label names that no search domain answers fail at once instead of after their timeouts.
printf '[Resolve]\nDNS=%s\nDomains=%s\nLLMNR=no\nMulticastDNS=no\nDNSSEC=no\n' "$dns" "$domain" \
  >"$upper/systemd/resolved.conf"
mount -t overlay tp-etc -o "lowerdir=/etc,upperdir=$upper,workdir=/run/tp-etc/work" /etc
