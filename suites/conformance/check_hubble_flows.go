package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/faults"
	"v6lab.dev/v6lab/labs/hubble"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/reports"
)

// Hubble's account of a pod's traffic, set against the wire. A pod (a removal-echo pod
// of the first application, on the first node) sends UDP probes to the world host
// twice: as the lab is, and under a default-deny policy on its Deployment's pods. The
// captures (the pod's veth, its node's uplink, the world host's link) say which probes
// left the pod and which arrived; the agent on the pod's node says, through Hubble,
// what it did with them. They must tell the same story: what arrived was FORWARDED,
// what the policy stopped was DROPPED with the reason POLICY_DENIED. Every
// disagreement is in the report (its Hubble section). Control: the world host's router
// drops the pod's probes (nft, forward hook): the wire loses them where Cilium cannot
// see, and Hubble's FORWARDED no longer means delivered.
func hubbleFlows() Check {
	return Check{
		Name:         "hubble-flows",
		Concurrent:   withPods,
		ControlGroup: disjointBreaks,
		Applies:      podsEgressAsThemselves,
		Breakage:     "the world host's router drops the pod's UDP to the probe port on its link to the world host (outside Cilium's sight)",
		Expect:       kindHubbleDisagrees,
		// The default-deny step drops the probes, in the run and in the control.
		PassDrops:    []string{reasonPolicyDenied},
		ControlDrops: []string{reasonPolicyDenied},
		Break: func(ctx context.Context, x *Lab) (func(context.Context) error, error) {
			pod, err := hubblePod(ctx, x)
			if err != nil {
				return nil, err
			}
			w := x.Plan.HostByRole("world")
			// The pod's probes only: other controls of its group (ControlGroup) send to
			// the world host's probe port.
			undo, err := faults.Inject(ctx, x.Faults().DropStreamFrom(w.Router, w.RouterIface, pod.IP, ProbePort, "v6lab_hubble"))
			return func(context.Context) error { return undo() }, err
		},
		Run: runHubbleFlows,
	}
}

// hubblePod is the pod whose traffic hubble-flows sets against Hubble's: the first
// application's removal-echo pod on the first node. A policy on the removal-echo pods
// selects none of the pods the checks beside this one send from or to
// (Check.Concurrent, ControlGroup).
func hubblePod(ctx context.Context, x *Lab) (Pod, error) {
	app := x.Plan.Apps[0]
	pods, err := x.Pods(ctx, app.Namespace, RemovalName)
	if err != nil {
		return Pod{}, err
	}
	pod := onNode(pods, x.Plan.KubeNodes[0].Name)
	if pod.Name == "" {
		return Pod{}, fmt.Errorf("hubble-flows needs a %s pod of %s on %s", RemovalName, app.Namespace, x.Plan.KubeNodes[0].Name)
	}
	return pod, nil
}

// Failure kinds of hubble-flows.
const (
	kindHubbleDisagrees = "hubble-disagrees"  // Hubble's verdict on a probe is not what the wire showed
	kindDropReason      = "drop-reason-wrong" // a probe the policy stopped, dropped by Hubble's account for another reason
)

func runHubbleFlows(ctx context.Context, x *Lab, control bool) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	if err := x.StartResponder(ctx); err != nil {
		return r, err
	}
	pod, err := hubblePod(ctx, x)
	if err != nil {
		return r, err
	}
	ifaces, err := x.PodIfaces(ctx)
	if err != nil {
		return r, err
	}
	veth, err := podVeth(ifaces, pod)
	if err != nil {
		return r, err
	}
	world := x.Plan.HostByRole("world")
	to := netip.AddrPortFrom(world.Address, ProbePort)
	worldLink, uplink := x.HostLink("world"), x.Uplink(pod.Node)
	points := []string{veth, uplink, worldLink}
	probes := []hubble.Probe{
		{What: "pod → world host, no policy", Src: pod.IP, Dst: to, Proto: "UDP"},
		{What: "pod → world host, under default deny", Src: pod.IP, Dst: to, Proto: "UDP"},
	}
	send := func(p *hubble.Probe) error {
		p.Start = time.Now()
		_, err := x.PodProbeUDP(ctx, pod, to, "--count", "5", "--interval", "10ms", "--wait", "300ms")
		p.End = time.Now()
		return err
	}
	caps, err := x.Capture(ctx, "hubble-flows"+suffix(control), capture.Filter{Proto: "udp", Port: ProbePort}, points, func() error {
		if err := send(&probes[0]); err != nil {
			return err
		}
		restore, err := x.denyAll(ctx, pod.Namespace, RemovalName, "v6lab-hubble-default-deny", []Pod{pod})
		if restore != nil {
			defer func() {
				if rerr := restore(ctx); rerr != nil && err == nil {
					err = fmt.Errorf("policy not removed: %w", rerr)
				}
			}()
		}
		if err != nil {
			return err
		}
		return send(&probes[1])
	}, silentOK(worldLink))
	if err != nil {
		return r, err
	}
	r.pcaps(caps)
	for i := range probes {
		p := &probes[i]
		in := func(q *verdict.Packet) bool { return !q.Time.Before(p.Start) && !q.Time.After(p.End) }
		probe := func(q *verdict.Packet) bool {
			return q.Src == p.Src && q.Dst == p.Dst.Addr() && q.DstPort == p.Dst.Port() && q.Probe != nil && !q.Probe.Reply
		}
		for j := range caps[veth].Packets {
			if q := &caps[veth].Packets[j]; in(q) && probe(q) {
				p.Sent++
			}
		}
		for j := range caps[worldLink].Packets {
			if q := &caps[worldLink].Packets[j]; in(q) && probe(q) {
				p.Delivered++
			}
		}
	}
	flows, disagree, err := x.recordHubble(ctx, &r, probes, []string{pod.Node})
	if err != nil {
		return r, err
	}
	if probes[0].Sent == 0 || probes[1].Sent == 0 {
		r.fail(kindNothingSeen, "the pod's veth %s shows no probe leaving (%d, %d): nothing proven", veth, probes[0].Sent, probes[1].Sent)
	}
	for _, d := range disagree {
		r.fail(kindHubbleDisagrees, "%s: the wire %s, Hubble %s", d.What, d.Wire, d.Hubble)
	}
	denied := hubble.For(probes[1], flows)
	for _, why := range denied.DropReasons {
		if why != hubble.PolicyDenied {
			r.fail(kindDropReason, "%s: Hubble dropped it for %s, not %s", probes[1].What, why, hubble.PolicyDenied)
		}
	}
	if probes[1].Delivered == 0 && denied.Dropped == 0 && !slices.Contains(r.Failures, kindHubbleDisagrees) {
		r.fail(kindHubbleDisagrees, "%s: Hubble shows no drop", probes[1].What)
	}
	r.figure("probes_delivered_no_policy", float64(probes[0].Delivered))
	r.figure("hubble_policy_drops", float64(denied.Dropped))
	return r, nil
}

// identities names the security identities of a probe's flows, for the evidence.
func identities(a hubble.Account) string {
	if len(a.Flows) == 0 {
		return ""
	}
	f := a.Flows[0]
	return fmt.Sprintf(" (identities %d → %d)", f.SrcID, f.DstID)
}

// hubbleFlows reads, from the Hubble observers of the agents on nodes (none: every
// agent), every flow to or from any of ips between since and until. The observer
// writes a flow as the datapath reports it: the query waits a second past until first.
func (x *Lab) hubbleFlows(ctx context.Context, nodes []string, ips []netip.Addr, since, until time.Time) ([]hubble.Flow, error) {
	if d := time.Until(until.Add(time.Second)); d > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(d):
		}
	}
	var flows []hubble.Flow
	err := x.inAgents(ctx, nodes, func(_, out string) error {
		fs, err := hubble.Parse(out)
		flows = append(flows, fs...)
		return err
	}, append(append([]string{"hubble"}, hubble.ObserveArgs(since, until, ips...)...), "--server", hubble.Socket)...)
	return flows, err
}

// recordHubble reads Hubble's flows of the probes (from their senders, in their
// windows) from the agents on nodes (none: every agent) and records its account of
// each beside the wire's (hubbleAccounts). Recorded, not judged: a check that judges
// Hubble uses the disagreements it returns.
func (x *Lab) recordHubble(ctx context.Context, r *Result, probes []hubble.Probe, nodes []string) ([]hubble.Flow, []reports.Disagreement, error) {
	if len(probes) == 0 {
		return nil, nil, nil
	}
	var ips []netip.Addr
	since := probes[0].Start
	for _, p := range probes {
		if !slices.Contains(ips, p.Src) {
			ips = append(ips, p.Src)
		}
		if p.Start.Before(since) {
			since = p.Start
		}
	}
	slices.SortFunc(ips, func(a, b netip.Addr) int { return a.Compare(b) })
	flows, err := x.hubbleFlows(ctx, nodes, ips, since.Add(-time.Second), time.Now())
	if err != nil {
		return nil, nil, fmt.Errorf("hubble: %w", err)
	}
	return flows, hubbleAccounts(r, probes, flows), nil
}

// hubbleAccounts records, as evidence, what Hubble said of each probe, and records
// and returns where it and the wire disagree (r.Disagreements).
func hubbleAccounts(r *Result, probes []hubble.Probe, flows []hubble.Flow) []reports.Disagreement {
	for _, p := range probes {
		a := hubble.For(p, flows)
		r.Evidence = append(r.Evidence, reports.Evidence{Time: p.Start, Src: p.Src.String(), Dst: p.Dst.String(),
			Note: fmt.Sprintf("%s: the wire %d sent, %d delivered; Hubble %s%s", p.What, p.Sent, p.Delivered, a, identities(a))})
	}
	r.figure(reports.HubbleFlowsFigure, float64(len(flows)))
	var out []reports.Disagreement
	for _, d := range hubble.Compare(probes, flows) {
		out = append(out, reports.Disagreement{What: d.What, Wire: d.Wire, Hubble: d.Hubble})
	}
	r.Disagreements = append(r.Disagreements, out...)
	return out
}
