#!/usr/bin/env bash
# Builds the third-party programs of the offline node image from the Go modules pinned
# in tools/k8s (Kubernetes) and tools/etcd (etcd), through their tool directives, once
# per content of each module: cached under ${XDG_CACHE_HOME:-~/.cache}/v6lab/<module>/<key>
# and linked into the given directory. Cold: ~10 minutes on 2 cores; warm: nothing.
set -euo pipefail
. "$(dirname "$0")/progress.sh"
out=$(realpath -m "${1:?usage: k8s.sh DIR}")
root=$(cd "$(dirname "$0")/.." && pwd)
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/v6lab
mkdir -p "$out"

# build MODULE LDFLAGS "PROG PKG CGO" ... : builds each PROG from PKG with cgo on or off.
build() {
  local module=$1 ldflags=$2; shift 2
  local specs=("$@") spec name pkg cgo key cache missing=0 start
  cd "$root/tools/$module"
  key=$( (cat go.mod go.sum; go env GOVERSION; echo "$ldflags") | sha256sum | cut -c1-16)
  cache=$cache_root/$module/$key
  for spec in "${specs[@]}"; do read -r name pkg cgo <<<"$spec"; [ -x "$cache/$name" ] || missing=1; done
  if [ $missing = 1 ]; then
    build_start "$module" "$key"
    mkdir -p "$cache.tmp"
    for spec in "${specs[@]}"; do
      read -r name pkg cgo <<<"$spec"
      CGO_ENABLED=$cgo go build -trimpath -tags selinux,notest,grpcnotrace -ldflags="-s $ldflags" -o "$cache.tmp/$name" "$pkg"
    done
    rm -rf "$cache" && mv "$cache.tmp" "$cache"
    build_done "$module"
  fi
  for spec in "${specs[@]}"; do read -r name pkg cgo <<<"$spec"; ln -sf "$cache/$name" "$out/$name"; done
}

# Stamp the version the way Kubernetes' own build does (hack/lib/version.sh): clients
# such as Cilium read the server's version.
k8s_version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$root/tools/k8s/go.mod")
minor=$(echo "$k8s_version" | cut -d. -f2)
k8s_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags="$k8s_ldflags -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
build k8s "$k8s_ldflags" \
  "kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver 0" \
  "kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager 0" \
  "kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler 0" \
  "kubectl k8s.io/kubernetes/cmd/kubectl 0" \
  "kubelet k8s.io/kubernetes/cmd/kubelet 1"
build etcd "" "etcd go.etcd.io/etcd/server/v3 0"
