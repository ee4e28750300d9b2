#!/usr/bin/env bash
# Builds Cilium's programs from the module pinned in a tools module (tools/cilium for
# Cilium 1.20, tools/cilium-1.19 and tools/cilium-1.18 for 1.19 and 1.18), once per content of that module, and stages what the offline Cilium images carry from the same module
# version: the BPF sources the agent compiles at run time, and the two scripts the
# chart's init containers run. Cached under ${XDG_CACHE_HOME:-~/.cache}/v6lab/cilium/<key>
# and linked into the given directory, with the Helm chart of the same version. Cold: ~6 minutes on 2 cores; warm: nothing.
set -euo pipefail
. "$(dirname "$0")/progress.sh"
out=$(realpath -m "${1:?usage: cilium.sh DIR [TOOLS-MODULE]}")
cd "$(dirname "$0")/.."
cd "${2:-tools/cilium}"
version=$(awk '$1 == "github.com/cilium/cilium" {print $2; exit}' go.mod)
# Stamp the version as Cilium's Makefile does (pkg/version.ciliumVersion).
ldflags="-s -X github.com/cilium/cilium/pkg/version.ciliumVersion=${version#v}"
key=$( (cat go.mod go.sum; stub=$(go mod edit -json | awk -F'"' '/"Path": "\.\.?\//{print $4}'); [ -z "$stub" ] || find $stub -type f | sort | xargs cat; go env GOVERSION; echo "$ldflags") | sha256sum | cut -c1-16)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/v6lab/cilium/$key
progs="cilium-agent cilium-operator-generic cilium-dbg cilium-health cilium-health-responder cilium-cni cilium-mount cilium-sysctlfix"
missing=0
for p in $progs bpf init-container.sh install-plugin.sh chart; do [ -e "$cache/$p" ] || missing=1; done
if [ $missing = 1 ]; then
  build_start "cilium-${version#v}" "$key"
  rm -rf "$cache.tmp" && mkdir -p "$cache.tmp"
  b() { CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" "$@"; }
  b -o "$cache.tmp/cilium-agent" github.com/cilium/cilium/daemon
  b -tags ipam_provider_operator -o "$cache.tmp/cilium-operator-generic" github.com/cilium/cilium/operator
  b -o "$cache.tmp/cilium-dbg" github.com/cilium/cilium/cilium-dbg
  b -o "$cache.tmp/cilium-health" github.com/cilium/cilium/cilium-health
  b -o "$cache.tmp/cilium-health-responder" github.com/cilium/cilium/cilium-health/responder
  b -o "$cache.tmp/cilium-cni" github.com/cilium/cilium/plugins/cilium-cni
  b -o "$cache.tmp/cilium-mount" github.com/cilium/cilium/tools/mount
  b -o "$cache.tmp/cilium-sysctlfix" github.com/cilium/cilium/tools/sysctlfix
  src=$(go list -m -f '{{.Dir}}' github.com/cilium/cilium)
  cp -r "$src/bpf" "$cache.tmp/bpf" && chmod -R u+w "$cache.tmp/bpf"
  cp "$src/images/cilium/init-container.sh" "$src/plugins/cilium-cni/install-plugin.sh" "$cache.tmp/"
  cp -r "$src/install/kubernetes/cilium" "$cache.tmp/chart" && chmod -R u+w "$cache.tmp/chart"
  chmod 755 "$cache.tmp/"*.sh
  rm -rf "$cache" && mv "$cache.tmp" "$cache"
  build_done "cilium-${version#v}"
fi
mkdir -p "$out"
for p in $progs bpf init-container.sh install-plugin.sh chart; do ln -sfn "$cache/$p" "$out/$p"; done
