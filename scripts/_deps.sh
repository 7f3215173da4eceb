# shellcheck shell=sh
# Sourced (POSIX sh) by scripts/tp and scripts/fetch_deps, with $root set to the checkout's physical path: where
# Deno's cache is, and whether this checkout's dependencies are already in it. No subprocess: scripts/tp runs this on
# every start.
#
# DENO_DIR is exported (Deno's own default when unset: $XDG_CACHE_HOME/deno or ~/.cache/deno, ~/Library/Caches/deno on
# macOS), so every Deno that tp starts, in a lab namespace or through sudo, reads the same cache.
if [ -z "${DENO_DIR:-}" ]; then
  if [ -d /System/Library/CoreServices ]; then
    DENO_DIR="$HOME/Library/Caches/deno"
  else
    DENO_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/deno"
  fi
fi
export DENO_DIR
# The stamp lives in the cache it vouches for (clearing the cache clears it), one per checkout; it is newer than the
# files that name the dependencies when scripts/fetch_deps has fetched them.
deps_stamp="$DENO_DIR/tp_deps$root/fetched"
deps_fresh() {
  [ "$deps_stamp" -nt "$root/deno.lock" ] && [ "$deps_stamp" -nt "$root/deno.json" ] &&
    [ "$deps_stamp" -nt "$root/scripts/deno_version" ]
}
