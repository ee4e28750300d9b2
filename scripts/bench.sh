#!/usr/bin/env bash
# make bench: wall-clock and memory figures of the lab lifecycle on this machine
# (printed, never asserted). Uses its own lab names and state directory; removes what
# it creates. BENCH_COLD_IMAGES=0 skips the cold image build; BENCH_NODES="3 4 6" the
# lab sizes `up` is measured at; BENCH_CYCLES=5 the up/down cycles of the memory figure;
# BENCH_SUITE=0 skips the suite's figure (v6lab test on a default lab).
set -euo pipefail
bin=$1
state=$(mktemp -d)
# spec NAME NODES: the default lab under another name, with NODES Kubernetes nodes
# (extra agents alternate between the two leaves).
spec() {
  local name=$1 nodes=$2 f extra="" i
  f=$state/$name.yaml
  for ((i = 3; i < nodes; i++)); do
    extra+="    - {name: agent$i, role: agent, router: leaf$(( i % 2 + 1 ))}\n"
  done
  sed -e "s/^  name: default/  name: $name/" -e "s/^\(    - {name: agent2, role: agent, router: leaf2}\)$/\1\n$extra/" topologies/default.yaml | sed '/^$/d' > "$f"
  echo "$f"
}
cleanup() {
  "$bin" --state-dir "$state" down --all >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT

secs() { local s=$(date +%s.%N); "$@" >/dev/null; awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN{print b-a}'; }
# shares: reads up's step lines ("✓ kubernetes (45s): ...") and prints each step's time.
shares() {
  awk '/✓ /{ name=$0; sub(/^.*✓ /, "", name); sub(/ \(.*/, "", name)
             d=$0; sub(/^[^(]*\(/, "", d); sub(/\).*/, "", d)
             s=0; if (d ~ /ms$/) { sub(/ms$/, "", d); s=d/1000 } else { if (d ~ /m/) { split(d, a, "m"); s=a[1]*60; d=a[2] } sub(/s$/, "", d); s+=d }
             printf "    %-12s %6.1f s\n", name, s }'
}
# rss LAB: the lab's containers' memory (docker stats), in MiB.
rss() {
  docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' | awk -v p="v6lab-$1-" '
    index($1, p) == 1 { v=$2; u=v; gsub(/[0-9.]/, "", u); gsub(/[^0-9.]/, "", v)
      if (u == "GiB") v*=1024; else if (u == "KiB") v/=1024; else if (u == "B") v/=1048576; t+=v }
    END { printf "%.0f", t }'
}

"$bin" host setup >/dev/null
printf 'machine: %s cores, %s MiB memory, kernel %s; command: make bench (scripts/bench.sh)\n' \
  "$(nproc)" "$(free -m | awk '/^Mem:/{print $2}')" "$(uname -r)"
if [ "${BENCH_COLD_IMAGES:-1}" = 1 ]; then
  docker images --filter label=v6lab.dev/recipe-key -q | sort -u | xargs -r docker rmi -f >/dev/null
  printf 'images build (cold)      %6.1f s\n' "$(secs "$bin" images build)"
fi
printf 'images build (warm)      %6.1f s\n' "$(secs "$bin" images build)"
if [ -x "$(dirname "$bin")/k8s/kubelet" ]; then
  "$bin" images build >/dev/null
  # Images cached: the default release's images and the nodes' seeded store are made by
  # a first up, not measured.
  f=$(spec benchw 3)
  "$bin" --state-dir "$state" --spec "$f" up --no-cni >/dev/null
  "$bin" --state-dir "$state" down benchw >/dev/null
  for n in ${BENCH_NODES:-3 4 6}; do
    f=$(spec "bench$n" "$n")
    start=$(date +%s.%N)
    out=$("$bin" --state-dir "$state" --spec "$f" up 2>&1) || { echo "$out"; exit 1; }
    printf 'up, %d nodes              %6.1f s  (images cached; every step, through CoreDNS ready)\n' "$n" \
      "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')"
    echo "$out" | shares
    # The issue's figure: up to Cilium ready and every BGP session Established, i.e.
    # every step through cilium (and metallb); the dns step comes after.
    printf '  to Cilium ready, every session Established %5.1f s\n' "$(echo "$out" | shares | awk '{ s += $(NF-1) } $1 == "cilium" || $1 == "metallb" { t = s } END { print t }')"
    printf '  memory of the running lab %5s MiB  (docker stats, every container of the lab)\n' "$(rss "bench$n")"
    printf '  down                     %6.1f s\n' "$(secs "$bin" --state-dir "$state" down "bench$n")"
  done
  f=$(spec bench 3)
  for ((i = 1; i <= ${BENCH_CYCLES:-5}; i++)); do
    "$bin" --state-dir "$state" --spec "$f" up >/dev/null
    used_up=$(rss bench)
    "$bin" --state-dir "$state" down bench >/dev/null
    printf 'cycle %d: lab %5s MiB; host memory in use after down %6s MiB\n' "$i" "$used_up" "$(free -m | awk '/^Mem:/{print $3}')"
  done
fi
# The suite's figure: v6lab test on a running default lab (3 nodes): the workload,
# then every check with its negative control (up and down not counted).
if [ "${BENCH_SUITE:-1}" = 1 ] && [ -x "$(dirname "$bin")/v6lab-conformance.test" ] && [ -x "$(dirname "$bin")/k8s/kubelet" ]; then
  f=$(spec benchs 3)
  "$bin" --state-dir "$state" --spec "$f" up >/dev/null
  start=$(date +%s.%N)
  "$bin" --state-dir "$state" test benchs -o "$state/runs" >"$state/suite.out" 2>&1 || true
  printf 'suite of the default lab %6.1f s  (v6lab test on the running lab: the workload, every check with its control; %s)\n' \
    "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$(grep -ao '[0-9]* passed, [0-9]* failed, [0-9]* skipped' "$state/suite.out" | tail -1)"
  grep -a ' concurrent ' "$state/suite.out" | sed 's/^[0-9:]* */  /' || true
  "$bin" --state-dir "$state" down benchs >/dev/null
fi
f=$(spec benchu 3)
for i in 1 2 3; do
  printf 'up default underlay #%d   %6.1f s  (images warm, to every BGP session Established)\n' $i "$(secs "$bin" --state-dir "$state" --spec "$f" up --underlay-only)"
  printf 'up again (no change) #%d  %6.1f s\n' $i "$(secs "$bin" --state-dir "$state" --spec "$f" up --underlay-only)"
  printf 'down #%d                  %6.1f s\n' $i "$(secs "$bin" --state-dir "$state" down benchu)"
done
