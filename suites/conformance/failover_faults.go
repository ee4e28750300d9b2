package conformance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"v6lab.dev/v6lab/labs/faults"
	"v6lab.dev/v6lab/labs/frr"
	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/runtime"
	"v6lab.dev/v6lab/labs/spec"
)

// failure is one kind of failure the failover check injects while a stream enters
// through node n: what it does is in labs/faults; what the check expects of it is here.
type failure struct {
	name  string
	fault func(x *Lab, n *kubeNode) faults.Fault
	// timed: only a timer (BFD's or BGP's hold timer) finds this failure, so one
	// outage spreads by itself over the timer's interval (see detectionSpread).
	timed bool
	// withdraws: the node's router must withdraw the VIP's path through the node; the
	// withdrawal is measured (vtysh JSON) and asserted.
	withdraws bool
	// budget is the longest outage allowed (nil: eventBudget, or the detection time
	// when timed).
	budget func(x *Lab) time.Duration
	// applies says why the failure cannot be injected in this lab ("" when it can).
	applies func(x *Lab, n *kubeNode) string
}

func (f failure) budgetFor(x *Lab) time.Duration {
	switch {
	case f.budget != nil:
		return f.budget(x)
	case f.timed:
		return threshold(x)
	}
	return eventBudget
}

// failoverFailures are the failures of the check: the node's router link goes down;
// the node's BGP session is shut on its router; the node stops (frozen, and its link
// silent without going down: only BFD or the hold timer finds out); and the edge
// router's link to the node's ToR goes down, so that the edge itself must move the
// traffic (upstream reconvergence).
var failoverFailures = []failure{
	{name: "link-down", withdraws: true, fault: func(x *Lab, n *kubeNode) faults.Fault {
		return x.Faults().LinkDown(n.Router, n.RouterIface)
	}},
	{name: "session-down", withdraws: true, fault: func(x *Lab, n *kubeNode) faults.Fault {
		return x.Faults().SessionShut(n.Router, n.RouterASN, n.Announcer)
	}},
	{name: "node-stopped", timed: true, withdraws: true, fault: func(x *Lab, n *kubeNode) faults.Fault {
		return x.Faults().NodeFreeze(n.Name, n.Router, n.RouterIface, "v6lab_nodestop")
	}},
	{name: "tor-uplink-down", fault: func(x *Lab, n *kubeNode) faults.Fault {
		edge, iface := edgeUplink(x, n)
		return x.Faults().LinkDown(edge, iface)
	}, applies: func(x *Lab, n *kubeNode) string {
		if edge, _ := edgeUplink(x, n); edge == "" {
			return "the entry node's ToR has no link to an edge router"
		}
		return ""
	}},
}

// silentDrop is the control: the link to the entry node drops the stream while BGP
// stays up, for longer than the detection time; its budget is the detection time.
var silentDrop = failure{name: "silent-drop", budget: threshold, fault: func(x *Lab, n *kubeNode) faults.Fault {
	return x.Faults().DropStream(n.Router, n.RouterIface, ProbePort, "v6lab_negative")
}}

// edgeUplink is the edge router's interface toward the node's ToR ("" when the node's
// router is the edge, or not linked to it).
func edgeUplink(x *Lab, n *kubeNode) (edge, iface string) {
	for _, r := range x.Plan.Routers {
		if r.Role != spec.RoleEdge || r.Name == n.Router {
			continue
		}
		for _, i := range r.Interfaces {
			if i.Kind == plan.LinkFabric && i.Peer == n.Router {
				return r.Name, i.Name
			}
		}
	}
	return "", ""
}

// eventHold is how long a failure the routers see at once is kept: three times its
// budget, so that an outage it caused would exceed the budget by seconds, and the
// stream shows its new path for seconds before the restore. Configuration.
const eventHold = 3 * eventBudget

// bgpHold is the spec's BGP hold time.
func bgpHold(x *Lab) time.Duration {
	return time.Duration(x.Lab.Spec.Spec.BGP.HoldSeconds) * time.Second
}

// keepFor is how long the failure is kept, hold being the BGP hold time (bgpHold). One only a
// timer finds (timed), and the control, whose budget is the detection time, are kept
// for the hold time and two seconds more, so that the timer fires within it (the
// control one more, so that it outlasts its budget); one the routers see at once for
// eventHold.
func (f failure) keepFor(hold time.Duration) time.Duration {
	switch {
	case f.budget != nil:
		return hold + 3*time.Second
	case f.timed:
		return hold + 2*time.Second
	}
	return eventHold
}

// after is how long the stream runs on after the failure is undone: five seconds for
// the node's path to come back and move the flows it takes; two for the control, whose
// failure moved no route (BGP stayed up), so the stream is seen to come back.
func (f failure) after() time.Duration {
	if f.budget != nil {
		return 2 * time.Second
	}
	return 5 * time.Second
}

// inject injects a failure, measures the withdrawal at the node's router (when the
// failure withdraws), keeps the failure for its keepFor, and undoes it — always: a
// failed or half-done injection, and an interrupted run (ctx cancelled), are undone
// too (see faults.Inject), and the undo verifies the restore.
func inject(ctx context.Context, x *Lab, f failure, n *kubeNode, hold time.Duration) (at, restored time.Time, withdrawn time.Duration, err error) {
	undo, err := faults.Inject(ctx, f.fault(x, n))
	if err != nil {
		return time.Time{}, time.Time{}, -1, err
	}
	at = time.Now()
	keep := f.keepFor(hold)
	withdrawn = -1
	var werr error
	if f.withdraws {
		withdrawn, werr = waitWithdrawn(ctx, x, n.Router, n.vip, n.Announcer, keep)
	}
	if rest := keep - time.Since(at); rest > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(rest):
		}
	}
	err = errors.Join(werr, undo(), ctx.Err())
	return at, time.Now(), withdrawn, err
}

// waitWithdrawn polls the router (vtysh JSON) until its route to the VIP no longer goes
// through the node; it returns how long that took (-1: not within limit). A vtysh error
// or an unreadable answer is an error, never "withdrawn" or "still there".
func waitWithdrawn(ctx context.Context, x *Lab, router string, vip, node netip.Addr, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	r := runtime.Router(x.Plan, router)
	for time.Since(start) < limit && ctx.Err() == nil {
		via, err := r.PathsVia(ctx, netip.PrefixFrom(vip, 128), node)
		if err != nil {
			return -1, err
		}
		if !via {
			return time.Since(start), nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return -1, nil
}

// vipRoutes is every router's BGP route toward a VIP (vtysh JSON), by router.
func vipRoutes(ctx context.Context, x *Lab, vip netip.Addr) (map[string]frr.Route, error) {
	st, err := runtime.GetStatus(ctx, x.Plan)
	if err != nil {
		return nil, err
	}
	want := netip.PrefixFrom(vip, 128).String()
	routes := map[string]frr.Route{}
	for _, rt := range st.Routes {
		if rt.Prefix == want {
			routes[rt.Router] = rt
		}
	}
	return routes, nil
}

// waitPaths waits until every router's next hops toward the VIP are those of want.
func waitPaths(ctx context.Context, x *Lab, vip netip.Addr, want map[string]frr.Route, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got, err := vipRoutes(ctx, x, vip)
		var diff []string
		for router, rt := range want {
			if !slices.Equal(got[router].NextHops, rt.NextHops) {
				diff = append(diff, fmt.Sprintf("%s via %v, was %v", router, got[router].NextHops, rt.NextHops))
			}
		}
		if err == nil && len(diff) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the routers' paths toward %s did not come back within %s: %s (%v)", vip, timeout, strings.Join(diff, "; "), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// detectionSpread is how far one timer-detected outage lies from another by itself: the
// failure falls anywhere between two of the peer's packets, so detection comes between
// (multiplier-1) and multiplier BFD receive intervals after it, or between hold minus
// keepalive and hold seconds. v6lab compare widens its tolerance by it. Configuration.
func detectionSpread(x *Lab) time.Duration {
	b := x.Lab.Spec.Spec.BGP
	if b.BFD.Enabled {
		return time.Duration(b.BFD.ReceiveIntervalMs) * time.Millisecond
	}
	if b.KeepaliveSeconds > 0 {
		return time.Duration(b.KeepaliveSeconds) * time.Second
	}
	return bgpHold(x) / 3
}

// threshold is the longest outage the spec's failure detection allows: BFD's detection
// time, or the BGP hold time, plus a second for the routers to converge.
func threshold(x *Lab) time.Duration {
	b := x.Lab.Spec.Spec.BGP
	if b.BFD.Enabled {
		return time.Duration(b.BFD.DetectMultiplier*b.BFD.ReceiveIntervalMs)*time.Millisecond + time.Second
	}
	return bgpHold(x) + time.Second
}
