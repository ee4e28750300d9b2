#!/usr/bin/env bash
# Builds the third-party programs v6lab drives (containerlab, pinned in tools/go.mod)
# and v6lab-clab (v6lab's deploy sequence over containerlab's packages), once per
# content of the tools module: they are cached under ${XDG_CACHE_HOME:-~/.cache}/v6lab
# and linked into the given bin directory. A warm run builds nothing.
set -euo pipefail
. "$(dirname "$0")/progress.sh"
bin=$(realpath -m "${1:?usage: tools.sh BINDIR}")
cd "$(dirname "$0")/../tools"
key=$( (cat go.mod go.sum; find cmd -type f -name '*.go' | sort | xargs cat; go env GOVERSION) | sha256sum | cut -c1-16)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/v6lab/tools/$key
if [ ! -x "$cache/containerlab" ] || [ ! -x "$cache/v6lab-clab" ]; then
  build_start tools "$key"
  mkdir -p "$cache.tmp"
  CGO_ENABLED=0 go build -trimpath -o "$cache.tmp/containerlab" github.com/srl-labs/containerlab
  CGO_ENABLED=0 go build -trimpath -o "$cache.tmp/v6lab-clab" ./cmd/v6lab-clab
  rm -rf "$cache" && mv "$cache.tmp" "$cache"
  build_done tools
fi
mkdir -p "$bin"
for t in containerlab v6lab-clab; do ln -sf "$cache/$t" "$bin/$t"; done
