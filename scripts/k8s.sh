#!/usr/bin/env bash
# Builds the third-party programs of the offline node image from the Go modules pinned
# in tools/k8s (Kubernetes) and tools/etcd (etcd), through their tool directives, once
# per content of each module: cached under ${XDG_CACHE_HOME:-~/.cache}/v6lab/<module>/<key>
# and linked into the given directory. Cold: ~7 minutes on 2 cores (all five Kubernetes
# programs in one go build; as five builds with a cgo kubelet it was 10m38s); warm: nothing.
set -euo pipefail
. "$(dirname "$0")/progress.sh"
out=$(realpath -m "${1:?usage: k8s.sh DIR}")
root=$(cd "$(dirname "$0")/.." && pwd)
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/v6lab
mkdir -p "$out"

# build MODULE LDFLAGS "PROG PKG CGO" ... : builds each PROG from PKG with cgo on or off;
# the programs that share a cgo setting in one `go build` (its packages compiled once,
# the programs linked in parallel).
build() {
  local module=$1 ldflags=$2; shift 2
  local specs=("$@") spec name pkg cgo key cache missing=0 c pkgs names
  cd "$root/tools/$module"
  key=$( (cat go.mod go.sum; go env GOVERSION; echo "$ldflags"; printf '%s\n' "${specs[@]}") | sha256sum | cut -c1-16)
  cache=$cache_root/$module/$key
  for spec in "${specs[@]}"; do read -r name pkg cgo <<<"$spec"; [ -x "$cache/$name" ] || missing=1; done
  if [ $missing = 1 ]; then
    build_start "$module" "$key"
    rm -rf "$cache.tmp" && mkdir -p "$cache.tmp"
    for c in 0 1; do
      pkgs=() names=()
      for spec in "${specs[@]}"; do
        read -r name pkg cgo <<<"$spec"
        [ "$cgo" = $c ] && pkgs+=("$pkg") && names+=("$name")
      done
      case ${#pkgs[@]} in
      0) continue ;;
      1) CGO_ENABLED=$c go build -trimpath -tags selinux,notest,grpcnotrace -ldflags="-s $ldflags" -o "$cache.tmp/${names[0]}" "${pkgs[0]}" ;;
      *) # go build -o DIR/ names each program after its package's directory
        CGO_ENABLED=$c go build -trimpath -tags selinux,notest,grpcnotrace -ldflags="-s $ldflags" -o "$cache.tmp/" "${pkgs[@]}"
        for name in "${names[@]}"; do [ -x "$cache.tmp/$name" ] || { echo "k8s.sh: $module: no $name after go build" >&2; exit 1; }; done ;;
      esac
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
# kubelet without cgo too, like the rest (a static binary; the node image has no C
# library it needs), so that one go build compiles every package once for all five.
build k8s "$k8s_ldflags" \
  "kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver 0" \
  "kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager 0" \
  "kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler 0" \
  "kubectl k8s.io/kubernetes/cmd/kubectl 0" \
  "kubelet k8s.io/kubernetes/cmd/kubelet 0"
build etcd "" "etcd go.etcd.io/etcd/server/v3 0"
