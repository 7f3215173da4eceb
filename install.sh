#!/bin/sh
# Installs tp: curl -fsSL https://github.com/OWNER/tp/releases/latest/download/install.sh | sh
# Downloads the single executable for this OS and CPU from the release, checks its SHA-256 against the release's
# SHA256SUMS, and installs it as $TP_INSTALL_DIR/tp (default /usr/local/bin, through sudo when that is not writable),
# mode 0755; through sudo it is root's file, as a program root runs must be. Running it again upgrades in place.
# TP_VERSION picks a release (default latest), TP_REPO the repository, TP_RELEASE_URL the URL the release's files are
# under (a mirror; tests/install_sh_test.ts serves a fake release).
set -eu
repo="${TP_REPO:-OWNER/tp}"
version="${TP_VERSION:-latest}"
dir="${TP_INSTALL_DIR:-/usr/local/bin}"
case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  *) echo "tp: unsupported OS $(uname -s); tp runs on Linux and macOS" >&2; exit 1 ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=x86_64 ;;
  aarch64 | arm64) arch=aarch64 ;;
  *) echo "tp: unsupported CPU $(uname -m); tp runs on x86_64 and aarch64" >&2; exit 1 ;;
esac
asset="tp-$os-$arch"
if [ -n "${TP_RELEASE_URL:-}" ]; then
  base="${TP_RELEASE_URL%/}"
elif [ "$version" = latest ]; then
  base="https://github.com/$repo/releases/latest/download"
else
  base="https://github.com/$repo/releases/download/$version"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "tp: downloading $asset ($version)"
curl -fsSL -o "$tmp/$asset" "$base/$asset"
curl -fsSL -o "$tmp/SHA256SUMS" "$base/SHA256SUMS"
grep " \*\{0,1\}$asset\$" "$tmp/SHA256SUMS" >"$tmp/sum" || {
  echo "tp: the release's SHA256SUMS has no line for $asset: not installed" >&2
  exit 1
}
if command -v sha256sum >/dev/null; then check="sha256sum -c"; else check="shasum -a 256 -c"; fi # macOS: shasum
(cd "$tmp" && $check sum >/dev/null 2>&1) || {
  echo "tp: checksum mismatch for $asset: not installed" >&2
  exit 1
}
# install(1) writes a new file (a running tp is not disturbed) owned by whoever runs it: root, through sudo.
if [ -w "$dir" ]; then
  install -m 0755 "$tmp/$asset" "$dir/tp"
else
  echo "tp: installing to $dir with sudo"
  sudo install -m 0755 "$tmp/$asset" "$dir/tp"
fi
echo "tp: installed $("$dir/tp" version)"
