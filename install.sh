#!/bin/sh
# Installs tp: curl -fsSL https://github.com/OWNER/tp/releases/latest/download/install.sh | sh
# Downloads the single executable for this OS and CPU from the release, checks its SHA-256 against the release's
# SHA256SUMS, and puts it in $TP_INSTALL_DIR (default /usr/local/bin, through sudo when that is not writable).
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
if [ "$version" = latest ]; then
  base="https://github.com/$repo/releases/latest/download"
else
  base="https://github.com/$repo/releases/download/$version"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "tp: downloading $asset ($version)"
curl -fsSL -o "$tmp/$asset" "$base/$asset"
curl -fsSL -o "$tmp/SHA256SUMS" "$base/SHA256SUMS"
(cd "$tmp" && grep " $asset\$" SHA256SUMS | sha256sum -c - >/dev/null) || {
  echo "tp: checksum mismatch for $asset: not installed" >&2
  exit 1
}
chmod +x "$tmp/$asset"
if [ -w "$dir" ]; then
  mv "$tmp/$asset" "$dir/tp"
else
  echo "tp: installing to $dir with sudo"
  sudo mv "$tmp/$asset" "$dir/tp"
fi
echo "tp: installed $("$dir/tp" version)"
