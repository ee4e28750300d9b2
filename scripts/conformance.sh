#!/usr/bin/env bash
# make conformance: setup -> images -> up -> suites -> report -> down.
# Stages that are not built yet stop the run with a non-zero status: a conformance job
# that verified nothing must never look like a pass to a nightly CI.
set -euo pipefail
bin=$1 runs=$2; shift 2
run="$runs/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$run"
"$bin" validate "$@"
"$bin" render "$@" -o "$run/render" >/dev/null
echo "rendered the lab into $run/render"
cat >&2 <<MSG
v6lab conformance: stopped after render.
Built so far: the lab runtime with an offline Kubernetes cluster and Cilium in native
routing (make lab-up / lab-down) and the capture/verdict engine (v6lab capture /
analyze). Not built yet: tunnel mode, VIPs, MetalLB and the Kubernetes conformance
suites. Nothing was tested.
MSG
echo "$run"
exit 2
