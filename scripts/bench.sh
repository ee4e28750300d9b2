#!/usr/bin/env bash
# make bench: wall-clock figures of the lab lifecycle on this machine (printed, never
# asserted). Uses its own lab name and state directory; removes what it creates.
set -euo pipefail
bin=$1
state=$(mktemp -d)
lab=bench
spec=$(mktemp --suffix=.yaml)
sed "s/^  name: default/  name: $lab/" topologies/default.yaml > "$spec"
trap '"$bin" --state-dir "$state" down --all >/dev/null 2>&1 || true; rm -rf "$state" "$spec"' EXIT

secs() { local s=$(date +%s.%N); "$@" >/dev/null; awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN{print b-a}'; }

"$bin" host setup >/dev/null
if [ "${BENCH_COLD_IMAGES:-1}" = 1 ]; then
  docker images --filter label=v6lab.dev/recipe-key -q | sort -u | xargs -r docker rmi -f >/dev/null
  printf 'images build (cold)      %6.1f s\n' "$(secs "$bin" images build)"
fi
printf 'images build (warm)      %6.1f s\n' "$(secs "$bin" images build)"
if [ -x "$(dirname "$bin")/k8s/kubelet" ]; then
  "$bin" images build >/dev/null
  printf 'up default lab + k8s      %6.1f s  (images warm, to every node registered)\n' "$(secs "$bin" --state-dir "$state" --spec "$spec" up)"
  printf 'down                      %6.1f s\n' "$(secs "$bin" --state-dir "$state" down $lab)"
fi
for i in 1 2 3; do
  printf 'up default underlay #%d   %6.1f s  (images warm, to every BGP session Established)\n' $i "$(secs "$bin" --state-dir "$state" --spec "$spec" up --underlay-only)"
  printf 'up again (no change) #%d  %6.1f s\n' $i "$(secs "$bin" --state-dir "$state" --spec "$spec" up --underlay-only)"
  printf 'down #%d                  %6.1f s\n' $i "$(secs "$bin" --state-dir "$state" down $lab)"
done
