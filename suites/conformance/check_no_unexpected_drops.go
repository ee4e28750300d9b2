package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"v6lab.dev/v6lab/reports"
)

// Over the whole suite, the agents' drop counters (cilium_drop_count_total, by reason
// and direction) grew only for reasons that what ran at the time explains: each
// check's run and control declare the reasons they may cause (Check.PassDrops,
// ControlDrops), the workload's start its own (workloadDrops). Cilium counts the drops,
// not the wire: a dropped packet leaves no trace to capture. Control: a policy that
// denies app-a's echo pods all egress outside the cluster, and the suite's probes from
// those pods to the world host → Policy denied, which nothing declares.
func noUnexpectedDrops() Check {
	return Check{
		Name:         "no-unexpected-drops",
		Applies:      always,
		Breakage:     "a CiliumNetworkPolicy allowing app-a's echo pods egress only to the cluster, then their probes to the world host",
		Expect:       kindUnexpectedDrop,
		ControlDrops: []string{reasonPolicyDenied},
		Break: func(ctx context.Context, x *Lab) (func(context.Context) error, error) {
			ns := x.Plan.Apps[0].Namespace
			pods, err := x.Pods(ctx, ns, EchoName)
			if err != nil {
				return nil, err
			}
			return x.applyCNP(ctx, ns, "v6lab-drops-control", map[string]any{
				"endpointSelector": matchLabels(map[string]string{"app": EchoName}),
				"egress":           []any{map[string]any{"toEntities": []any{"cluster"}}}}, pods)
		},
		Run: runNoUnexpectedDrops,
	}
}

// Drop reasons as the agents' metrics name them (Cilium's pkg/monitor/api/drop.go).
const (
	reasonPolicyDenied  = "Policy denied"
	reasonInvalidSource = "Invalid source ip"
	reasonUnknownTarget = "Unknown L3 target address"
	reasonStaleIP       = "Stale or unroutable IP"
	reasonFragNeeded    = "Fragmentation needed"
	reasonFirstFragment = "First logical datagram fragment not found"
	// 1.20's name for a fragment from outside the cluster whose first one is missing.
	reasonFirstFragmentWorld = "First logical datagram fragment not found from world"
)

var (
	// backgroundDrops may come in any window: pods' packets from a source other than
	// their own address (see the README: their link-local MLD reports), which Cilium
	// drops by design.
	backgroundDrops = []string{reasonInvalidSource}
	// podStartDrops come with a new pod: its duplicate-address probe, a Neighbor
	// Solicitation for a target other than its gateway.
	podStartDrops = []string{reasonUnknownTarget}
	// agentRestartDrops come with an agent (re)starting or a node thawing: packets to
	// addresses its datapath does not know yet, and its new health endpoint's start.
	agentRestartDrops = append([]string{reasonStaleIP}, podStartDrops...)
	// workloadDrops are the drops of the workload's start, right after up.
	workloadDrops = agentRestartDrops
)

func runNoUnexpectedDrops(ctx context.Context, x *Lab, control bool) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	if control {
		// The policy's own window first; then only the probes' window is judged.
		x.markDrops(ctx, "no-unexpected-drops control: the policy applied", []string{reasonPolicyDenied})
		ns := x.Plan.Apps[0].Namespace
		pods, err := x.Pods(ctx, ns, EchoName)
		if err != nil {
			return r, err
		}
		if err := x.StartResponder(ctx); err != nil {
			return r, err
		}
		// No capture: the policy keeps the probes from every link but their pods' own.
		world := x.Plan.HostByRole("world")
		sent := 0
		for _, p := range pods {
			s, err := x.PodProbeUDP(ctx, p, netip.AddrPortFrom(world.Address, ProbePort), "--count", "10", "--interval", "10ms", "--wait", "300ms")
			if err != nil {
				return r, err
			}
			sent += s.Sent
		}
		r.figure("control_probes_sent", float64(sent))
		x.markDrops(ctx, "no-unexpected-drops control: probes from the denied pods", nil)
	} else {
		x.markDrops(ctx, "between checks", nil)
	}
	windows, errs := x.dropWindows()
	if len(errs) > 0 {
		return r, fmt.Errorf("drop counters not read: %s", strings.Join(errs, "; "))
	}
	if control {
		windows = windows[len(windows)-1:]
	}
	var expected, unexpected float64
	for _, w := range windows {
		lines, n := w.unexpected()
		unexpected += n
		for _, ds := range w.Drops {
			for _, v := range ds {
				expected += v
			}
		}
		if len(w.Drops) > 0 {
			r.Timeline = append(r.Timeline, reports.Event{At: w.From, Until: w.To, Lane: "Cilium drops", Label: w.Label + ": " + w.summary()})
		}
		for _, l := range lines {
			r.fail(kindUnexpectedDrop, "during %s: %s", w.Label, l)
		}
	}
	expected -= unexpected
	r.figure("windows", float64(len(windows)))
	r.figure("drops_declared", expected)
	r.figure("drops_unexpected", unexpected)
	return r, nil
}
