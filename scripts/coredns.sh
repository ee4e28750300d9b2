#!/usr/bin/env bash
# Builds CoreDNS from the module pinned in tools/coredns, once per content of that
# module: cached under ${XDG_CACHE_HOME:-~/.cache}/v6lab/coredns/<key> and linked into
# the given directory. Cold: a few minutes on 2 cores; warm: nothing.
set -euo pipefail
. "$(dirname "$0")/progress.sh"
out=$(realpath -m "${1:?usage: coredns.sh DIR}")
cd "$(dirname "$0")/../tools/coredns"
version=$(awk '$1 == "github.com/coredns/coredns" {print $2; exit}' go.mod)
key=$( (cat go.mod go.sum; go env GOVERSION) | sha256sum | cut -c1-16)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/v6lab/coredns/$key
if [ ! -x "$cache/coredns" ]; then
  build_start "coredns-${version#v}" "$key"
  rm -rf "$cache.tmp" && mkdir -p "$cache.tmp"
  CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$cache.tmp/coredns" github.com/coredns/coredns
  rm -rf "$cache" && mv "$cache.tmp" "$cache"
  build_done "coredns-${version#v}"
fi
mkdir -p "$out"
ln -sfn "$cache/coredns" "$out/coredns"
