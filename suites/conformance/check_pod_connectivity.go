package conformance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/hubble"
	"v6lab.dev/v6lab/reports"
)

// Every application reaches every other one, across nodes and on one node, each way,
// and the world host: each exchange judged from the captures where it must show (the
// uplinks it crosses, or the two pods' veths on one node), never from the probe's own
// report; each exchange counts only its sender's probes. A pair the workload cannot
// provide fails the check, naming it. Control: a NetworkPolicy that denies all
// ingress in the last application, and the pairs into it.
func podConnectivity() Check {
	return Check{
		Name:         "pod-connectivity",
		Concurrent:   withPods,
		ControlGroup: disjointBreaks,
		Applies:      always,
		Breakage:     "a NetworkPolicy denying all ingress in the second application's namespace",
		Expect:       kindUnanswered,
		ControlDrops: []string{reasonPolicyDenied},
		Break: func(ctx context.Context, x *Lab) (func(context.Context) error, error) {
			return x.denyIngress(ctx, x.Plan.Apps[len(x.Plan.Apps)-1].Namespace, "v6lab-deny-all", nil)
		},
		Run: runPodConnectivity,
	}
}

// kindPairMissing: the workload cannot provide an exchange the check must cover.
const kindPairMissing = "pair-missing"

// runPodConnectivity sends five probes for each pair, one pair after the other, and
// judges each from the captures at its points, in the pair's own time window: every
// point must show the requests toward the destination and as many replies coming back
// (in tunnel mode, inside VXLAN on the uplinks). The probe's own summary is not the
// verdict.
func runPodConnectivity(ctx context.Context, x *Lab, control bool) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	if err := x.StartResponder(ctx); err != nil {
		return r, err
	}
	if len(x.Plan.Apps) < 2 {
		return r, errors.New("pod-connectivity needs two applications")
	}
	pods := map[string][]Pod{}
	for _, app := range x.Plan.Apps {
		p, err := x.Pods(ctx, app.Namespace, EchoName)
		if err != nil {
			return r, err
		}
		pods[app.Name] = p
	}
	ifaces, err := x.PodIfaces(ctx)
	if err != nil {
		return r, err
	}
	pairs, missing := podPairs(x, pods, ifaces)
	for _, m := range missing {
		r.fail(kindPairMissing, "the workload cannot provide the pair %s", m)
	}
	if control {
		// The pairs into the application whose ingress the control denies: the
		// others' exchanges go where other controls of its group break the lab
		// (ControlGroup), and prove nothing about this one.
		last := pods[x.Plan.Apps[len(x.Plan.Apps)-1].Name]
		var into []podPair
		for _, pp := range pairs {
			if slices.ContainsFunc(last, func(p Pod) bool { return p.IP == pp.to.Addr() }) {
				into = append(into, pp)
			}
		}
		pairs = into
	}
	var points []string
	seen := map[string]bool{}
	for _, pp := range pairs {
		for _, pt := range pp.points {
			if !seen[pt] {
				seen[pt] = true
				points = append(points, pt)
			}
		}
	}
	// Under the control, a receiver's veth on the sender's node shows nothing: Cilium
	// delivers into a local pod past its veth's taps, and the pod, denied, answers
	// nothing (its replies were all that veth showed).
	var quiet []string
	if control {
		for _, pp := range pairs {
			if pp.union {
				quiet = append(quiet, pp.points[1])
			}
		}
	}
	const probes = 5
	caps, err := x.Capture(ctx, "pod-connectivity"+suffix(control), capture.Filter{IPv6Only: true}, points, func() error {
		for i := range pairs {
			pairs[i].start = time.Now()
			_, err := x.PodExec(ctx, pairs[i].from, "v6lab-probe", "send", "--to", pairs[i].to.String(),
				"--count", fmt.Sprint(probes), "--interval", "10ms", "--wait", "300ms")
			pairs[i].end = time.Now()
			if err != nil {
				return fmt.Errorf("%s: %w", pairs[i].name, err)
			}
		}
		return nil
	}, silentOK(quiet...))
	if err != nil {
		return r, err
	}
	r.pcaps(caps)
	answered := 0
	var wire []hubble.Probe
	for _, pp := range pairs {
		type leg struct {
			at       string
			req, rep int
		}
		var legs []leg
		// The pair's own probes: from the sender's address (or, masqueraded toward
		// the world in tunnel mode, its node's), whatever other checks send meanwhile.
		senders := []netip.Addr{pp.from.IP}
		if n := x.node(pp.from.Node); n != nil {
			senders = append(senders, n.Address)
		}
		for _, pt := range pp.points {
			req, rep := exchangeOf(caps[pt].Packets, senders, pp.to, pp.start, pp.end)
			if pp.union && len(legs) == 1 {
				legs[0].at += " + " + pt
				legs[0].req, legs[0].rep = max(legs[0].req, req), max(legs[0].rep, rep)
				continue
			}
			legs = append(legs, leg{pt, req, rep})
		}
		if len(legs) > 0 {
			// For Hubble's account: a reply at the sender's end proves its request
			// reached the destination (delivered means answered here).
			wire = append(wire, hubble.Probe{What: pp.name, Src: pp.from.IP, Dst: pp.to, Proto: "UDP",
				Start: pp.start, End: pp.end, Sent: legs[0].req, Delivered: legs[0].rep})
		}
		ok := true
		for _, l := range legs {
			switch {
			case l.req == 0:
				ok = false
				r.fail(kindNothingSeen, "%s (%s on %s): no request toward %s seen at %s", pp.name, pp.from.Name, pp.from.Node, pp.to, l.at)
			case l.rep < l.req:
				ok = false
				r.fail(kindUnanswered, "%s (%s on %s): at %s, %d requests toward %s and %d replies", pp.name, pp.from.Name, pp.from.Node, l.at, l.req, pp.to, l.rep)
			}
		}
		if ok {
			answered++
			r.Evidence = append(r.Evidence, reports.Evidence{Note: fmt.Sprintf("%s: %s -> %s answered, seen at %v", pp.name, pp.from.IP, pp.to, pp.points)})
		}
	}
	// Hubble's account of every pair, from every agent (the control's policy drops
	// on the destination's node), beside the wire's: recorded, not judged here.
	if _, _, err := x.recordHubble(ctx, &r, wire, nil); err != nil {
		return r, err
	}
	r.figure("pairs", float64(len(pairs)))
	r.figure("answered", float64(answered))
	return r, nil
}
