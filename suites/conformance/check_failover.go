package conformance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/faults"
	"v6lab.dev/v6lab/labs/frr"
	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/runtime"
	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/reports"
)

// A UDP probe stream from the client to a VIP runs while the node it enters through
// fails; the outage — measured from the replies' timestamps at the client, with the
// requests captured beside them — must stay within the fault's budget: the spec's
// failure detection time for a failure only a timer finds, the withdrawal budget for
// one the routers see at once. A stream that does not recover, loss spread over the
// stream beyond its budget, and a withdrawal that never came each fail the check.
// The control is a failure BGP cannot see: the same link silently drops the probes
// while its BGP session stays up; the outage lasts as long as the failure.
func failover() Check {
	return Check{
		Name:    "failover",
		Applies: always,
		Variant: "the entry node's router link drops the probe stream while BGP stays up (a failure only BFD-like detection would see), for longer than the detection time",
		Expect:  kindOutageOverBudget,
		Run:     runFailover,
	}
}

// Failure kinds of the failover check beyond the outage budget.
const (
	kindUnrecovered  = "unrecovered"   // the stream never came back
	kindSpreadLoss   = "spread-loss"   // more probes lost than the loss windows account for
	kindNotWithdrawn = "not-withdrawn" // the node's router kept its path through the failed node
)

// eventBudget is the outage allowed for a failure the routers see at once (a link
// down, a session shut): the withdrawal reaches the routers upstream in well under it
// (80-90 ms measured), so it bounds convergence, not detection. Configuration.
const eventBudget = time.Second

// fault is one failure the failover check injects while a stream enters through node
// n; do injects it, undo undoes it.
type fault struct {
	name     string
	do, undo func(ctx context.Context, x *Lab, n *kubeNode) error
	// timed: only a timer (BFD's or BGP's hold timer) finds this failure, so one
	// outage spreads by itself over the timer's interval (see detectionSpread).
	timed bool
	// withdraws: the node's router must withdraw the VIP's path through the node; the
	// withdrawal is measured (vtysh JSON) and asserted.
	withdraws bool
	// budget is the longest outage allowed (nil: eventBudget, or the detection time
	// when timed).
	budget func(x *Lab) time.Duration
	// applies says why the fault cannot be injected in this lab ("" when it can).
	applies func(x *Lab, n *kubeNode) string
}

func (f fault) budgetFor(x *Lab) time.Duration {
	switch {
	case f.budget != nil:
		return f.budget(x)
	case f.timed:
		return threshold(x)
	}
	return eventBudget
}

func setLink(router, iface, state string) func(context.Context, *Lab, *kubeNode) error {
	return func(ctx context.Context, x *Lab, n *kubeNode) error {
		r, i := router, iface
		if r == "" {
			r, i = n.Router, n.RouterIface
		}
		_, err := x.Exec(ctx, r, "ip", "link", "set", i, state)
		return err
	}
}

func sessionShut(shut bool) func(context.Context, *Lab, *kubeNode) error {
	return func(ctx context.Context, x *Lab, n *kubeNode) error {
		cmd := "neighbor " + n.Announcer.String() + " shutdown"
		if !shut {
			cmd = "no " + cmd
		}
		return runtime.Router(x.Plan, n.Router).Configure(ctx, "router bgp "+fmt.Sprint(n.RouterASN), cmd)
	}
}

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

// failoverFaults are the failures of the check: the node's router link goes down; the
// node's BGP session is shut on its router; the node stops (frozen, and its link silent
// without going down: only BFD or the hold timer finds out); and the edge router's
// link to the node's ToR goes down, so that the edge itself must move the traffic
// (upstream reconvergence).
var failoverFaults = []fault{
	{name: "link-down", do: setLink("", "", "down"), undo: setLink("", "", "up"), withdraws: true},
	{name: "session-down", do: sessionShut(true), undo: sessionShut(false), withdraws: true},
	{name: "node-stopped", timed: true, withdraws: true,
		do: func(ctx context.Context, x *Lab, n *kubeNode) error {
			// A node that dies without its link going down: its processes frozen, and
			// nothing in or out of its link any more (a frozen container's kernel
			// datapath would go on forwarding).
			if _, err := x.ExecStdin(ctx, n.Router, faults.Blackhole("v6lab_nodestop", n.RouterIface), "nft", "-f", "-"); err != nil {
				return err
			}
			_, err := run(ctx, "docker", []string{"pause", x.Plan.ContainerName(n.Name)}, "")
			return err
		},
		undo: func(ctx context.Context, x *Lab, n *kubeNode) error {
			_, err := run(ctx, "docker", []string{"unpause", x.Plan.ContainerName(n.Name)}, "")
			if _, derr := x.Exec(ctx, n.Router, faults.Remove("v6lab_nodestop")...); err == nil {
				err = derr
			}
			return err
		}},
	{name: "tor-uplink-down",
		do: func(ctx context.Context, x *Lab, n *kubeNode) error {
			edge, iface := edgeUplink(x, n)
			return setLink(edge, iface, "down")(ctx, x, n)
		},
		undo: func(ctx context.Context, x *Lab, n *kubeNode) error {
			edge, iface := edgeUplink(x, n)
			return setLink(edge, iface, "up")(ctx, x, n)
		},
		applies: func(x *Lab, n *kubeNode) string {
			if edge, _ := edgeUplink(x, n); edge == "" {
				return "the entry node's ToR has no link to an edge router"
			}
			return ""
		}},
}

// silentDrop is the control: the link to the entry node drops the stream while BGP
// stays up, for longer than the detection time; its budget is the detection time.
var silentDrop = fault{name: "silent-drop", budget: threshold,
	do: func(ctx context.Context, x *Lab, n *kubeNode) error {
		rules := fmt.Sprintf("add table inet v6lab_negative\nadd chain inet v6lab_negative forward_c { type filter hook forward priority -300; }\nadd rule inet v6lab_negative forward_c oifname %s udp dport %d drop\n", n.RouterIface, ProbePort)
		_, err := x.ExecStdin(ctx, n.Router, rules, "nft", "-f", "-")
		return err
	},
	undo: func(ctx context.Context, x *Lab, n *kubeNode) error {
		_, err := x.Exec(ctx, n.Router, faults.Remove("v6lab_negative")...)
		return err
	}}

// inject injects a failure, measures the withdrawal at the node's router (when the
// fault withdraws), keeps the failure for the detection time plus two seconds (plus
// one for the control, which must outlast it), and undoes it — always: a failed or
// half-done injection, and an interrupted run (ctx cancelled), are undone too, on a
// context of their own.
func inject(ctx context.Context, x *Lab, f fault, n *kubeNode, hold time.Duration) (at, restored time.Time, withdrawn time.Duration, err error) {
	undoAlways := func() error {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		return f.undo(uctx, x, n)
	}
	if err := f.do(ctx, x, n); err != nil {
		_ = undoAlways()
		return time.Time{}, time.Time{}, -1, err
	}
	at = time.Now()
	keep := hold + 2*time.Second
	if f.budget != nil {
		keep += time.Second
	}
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
	err = errors.Join(werr, undoAlways(), ctx.Err())
	return at, time.Now(), withdrawn, err
}

// probeInterval is the failover stream's: one probe per 10 ms.
const probeInterval = 10 * time.Millisecond

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
	return time.Duration(b.HoldSeconds) * time.Second / 3
}

// threshold is the longest outage the spec's failure detection allows: BFD's detection
// time, or the BGP hold time, plus a second for the routers to converge.
func threshold(x *Lab) time.Duration {
	b := x.Lab.Spec.Spec.BGP
	if b.BFD.Enabled {
		return time.Duration(b.BFD.DetectMultiplier*b.BFD.ReceiveIntervalMs)*time.Millisecond + time.Second
	}
	return time.Duration(b.HoldSeconds)*time.Second + time.Second
}

func runFailover(ctx context.Context, x *Lab, control bool) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	r.config("threshold_ms", float64(threshold(x).Milliseconds()))
	r.config("event_budget_ms", float64(eventBudget.Milliseconds()))
	faults := failoverFaults
	if control {
		faults = []fault{silentDrop}
	}
	vip, err := x.VIP(ctx, x.Plan.Apps[0].Namespace, DSRSvc)
	if err != nil {
		return r, err
	}
	whole, err := vipRoutes(ctx, x, vip)
	if err != nil {
		return r, err
	}
	for _, f := range faults {
		if err := measureFault(ctx, x, f, &r); err != nil {
			return r, fmt.Errorf("%s: %w", f.name, err)
		}
		// The lab is whole again before the next failure: sessions up, and every
		// router's paths toward the VIP what they were (a path that comes back moves
		// flows between the nodes: a stream measured meanwhile may leave the node
		// the fault is injected on).
		if err := runtime.WaitReady(ctx, x.Plan, x.Kubeconfig, 5*time.Minute); err != nil {
			return r, fmt.Errorf("after %s: %w", f.name, err)
		}
		if err := waitPaths(ctx, x, vip, whole, 2*time.Minute); err != nil {
			return r, fmt.Errorf("after %s: %w", f.name, err)
		}
	}
	return r, nil
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

// measureFault runs probe streams until one enters through a node other than the
// backend's (new streams pick new source ports, hence new ECMP paths), injects the
// failure on that node, and judges the outage into r. A stream seen through two nodes,
// one whose outage of 0 ms the entry node's uplink does not show crossing that node up
// to the fault, or one a stopped node cost nothing, left its node: another stream is
// tried.
func measureFault(ctx context.Context, x *Lab, f fault, r *Result) error {
	// A stream that enters through the backend's node costs ~2 s; where half the paths
	// lead there (one leaf serves only that node), 16 of them in a row happen once in
	// 65,536 faults.
	const maxAttempts = 16
	r.config("budget_ms_"+f.name, float64(f.budgetFor(x).Milliseconds()))
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		entry, err := failoverOnce(ctx, x, f, attempt, r)
		if err != nil {
			return err
		}
		if entry != "" {
			r.figure("attempts_"+f.name, float64(attempt))
			return nil
		}
	}
	return fmt.Errorf("none of %d probe streams entered through one node other than the backend's and stayed on it: no failover to measure", maxAttempts)
}

// crossedUntil reports whether the entry node's uplink shows requests of the stream
// (client -> VIP) within three probe intervals before the fault: an outage of 0 ms is
// proven only for a stream that was crossing the faulted node when it failed.
func crossedUntil(pkts []verdict.Packet, client, vip netip.Addr, at time.Time) bool {
	req := verdict.Match{Proto: "udp", Src: client, Dst: vip, DstPort: ProbePort}
	for i := range pkts {
		if req.Matches(&pkts[i]) && !pkts[i].Time.Before(at.Add(-3*probeInterval)) && !pkts[i].Time.After(at.Add(probeInterval)) {
			return true
		}
	}
	return false
}

// failoverOnce runs one stream with the fault; it returns the entry node, or "" when
// the stream measured nothing about it (another is tried).
func failoverOnce(ctx context.Context, x *Lab, f fault, attempt int, r *Result) (string, error) {
	ns := x.Plan.Apps[0].Namespace
	vip, err := x.VIP(ctx, ns, DSRSvc)
	if err != nil {
		return "", err
	}
	client := x.Plan.HostByRole("client")
	hold := time.Duration(x.Lab.Spec.Spec.BGP.HoldSeconds) * time.Second
	total := hold + 8*time.Second
	name := fmt.Sprintf("failover-%s-%d", f.name, attempt)
	clientPt := x.HostLink("client")
	var uplinks []string
	for _, n := range x.Plan.KubeNodes {
		uplinks = append(uplinks, x.Uplink(n.Name))
	}
	var entry, skip string
	var faultAt, restoredAt time.Time
	withdrawn := time.Duration(-1)
	filter := capture.Filter{Proto: "udp", Port: ProbePort}
	// The client's link holds both directions of the stream; every node's uplink shows
	// which node the stream crossed up to the fault.
	caps, err := x.Capture(ctx, name, filter, append([]string{clientPt}, uplinks...), func() error {
		done := make(chan error, 1)
		go func() {
			_, err := x.ProbeUDP(ctx, client.Name, netip.AddrPortFrom(vip, ProbePort), "--interval", probeInterval.String(), "--duration", total.String(), "--wait", "500ms")
			done <- err
		}()
		// The entry node: a short capture on every node's uplink.
		time.Sleep(500 * time.Millisecond)
		probe, err := x.Capture(ctx, name+"-entry", filter, uplinks, func() error {
			time.Sleep(500 * time.Millisecond)
			return nil
		}, silentOK(uplinks...))
		if err != nil {
			<-done
			return err
		}
		var entries []string
		for _, n := range x.Plan.KubeNodes {
			for _, p := range probe[x.Uplink(n.Name)].Packets {
				if p.IPv6 && p.Dst == vip {
					entries = append(entries, n.Name)
					break
				}
			}
		}
		if len(entries) == 1 && entries[0] != x.DSRNode() {
			entry = entries[0]
		}
		n := x.node(entry)
		if n != nil && f.applies != nil {
			skip = f.applies(x, n)
		}
		if entry == "" || skip != "" {
			// Through two nodes: the routers moved the flow while the entry was
			// captured; a fault on either node would not measure this stream. Or the
			// fault cannot hit this entry node (another entry may do).
			slog.Info("failover: the stream entered through the backend's node, through more than one node, was not seen, or through a node the fault cannot hit; another flow",
				"fault", f.name, "attempt", attempt, "entries", entries, "why", skip)
			entry = ""
			_, _ = x.Exec(ctx, client.Name, "pkill", "-f", "v6lab-probe send")
			<-done
			return nil
		}
		n.vip = vip
		faultAt, restoredAt, withdrawn, err = inject(ctx, x, f, n, hold)
		if err != nil {
			<-done
			return err
		}
		return <-done
	}, silentOK(uplinks...))
	if err != nil || entry == "" {
		return "", err
	}
	c := caps[clientPt]
	v, err := verdict.OutageOf(verdict.Slice(c.Packets), verdict.Match{Proto: "udp", Port: ProbePort},
		verdict.OutageOptions{Client: client.Address, MaxLost: -1})
	if err != nil {
		return "", err
	}
	var worst verdict.Window
	windowed := 0.0 // ms of loss windows, the probes they account for
	for _, w := range v.Windows {
		windowed += w.DurationMs
		if w.DurationMs > worst.DurationMs {
			worst = w
		}
	}
	if len(v.Windows) == 0 {
		// No outage at all: proven only if the stream crossed the faulted node up to
		// the fault (else the routers had moved it off that node before), and a node
		// stopped under the stream always loses probes until a timer finds it.
		if f.timed || !crossedUntil(caps[x.Uplink(entry)].Packets, client.Address, vip, faultAt) {
			slog.Info("failover: the stream lost nothing, and the entry node's uplink does not show it crossing that node up to the fault: another flow",
				"fault", f.name, "attempt", attempt, "entry", entry)
			return "", nil
		}
	}
	r.pcaps(caps)
	budget := f.budgetFor(x)
	r.figure("outage_ms_"+f.name, worst.DurationMs)
	r.figure("lost_"+f.name, float64(v.Lost))
	switch {
	case v.Unrecovered:
		r.fail(kindUnrecovered, "%s of %s: the stream did not recover (requests went on %.0f ms after the last reply)", f.name, entry, worst.DurationMs)
	case worst.DurationMs > float64(budget.Milliseconds()):
		r.fail(kindOutageOverBudget, "%s of %s: outage %.0f ms exceeds its budget of %s", f.name, entry, worst.DurationMs, budget)
	}
	// Lost probes beyond what the loss windows account for are loss spread over the
	// stream (every other probe lost makes no window at all): 1% of the requests and
	// one probe of slack.
	if allowed := int(windowed/float64(probeInterval.Milliseconds())) + v.Requests/100 + 1; v.Lost > allowed {
		r.fail(kindSpreadLoss, "%s of %s: %d of %d probes lost, %d more than the loss windows (%.0f ms) account for", f.name, entry, v.Lost, v.Requests, v.Lost-allowed, windowed)
	}
	if f.withdraws && withdrawn < 0 {
		r.fail(kindNotWithdrawn, "%s of %s: %s kept its path toward %s through the node", f.name, entry, x.node(entry).Router, vip)
	}
	switch {
	case f.timed: // the timer's spread: the outage's, the withdrawal's, the lost probes' (configuration)
		spread := detectionSpread(x)
		r.config(reports.SpreadPrefix+f.name, float64(spread.Milliseconds()))
		r.config(reports.SpreadLostPrefix+f.name, float64(spread/probeInterval))
	case withdrawn >= 0:
		// Seen at once by the routers: the stream may have had another way at the
		// node's router (no outage) or none until the withdrawal reached the routers
		// upstream, so one outage lies between 0 and about the withdrawal time of the
		// same run, measured at the node's router (link-down: outages of 0, 0, 68 and
		// 106 ms, withdrawals 80-85 ms; compare adds its 100 ms for the rest). The
		// withdrawal time itself keeps the plain tolerance. Measured.
		r.figure(reports.SpreadOf("outage_ms_"+f.name), float64(withdrawn.Milliseconds()))
		r.figure(reports.SpreadLostPrefix+f.name, float64(withdrawn/probeInterval))
	}
	if withdrawn >= 0 {
		r.figure("withdraw_ms_"+f.name, float64(withdrawn.Milliseconds()))
	}
	r.Timeline = append(r.Timeline, reports.Event{At: faultAt, Label: f.name + ": " + entry, Until: restoredAt})
	for _, w := range v.Windows {
		label := fmt.Sprintf("no replies (%.0f ms)", w.DurationMs)
		if w.Unrecovered {
			label = fmt.Sprintf("no replies, unrecovered (%.0f ms)", w.DurationMs)
		}
		r.Timeline = append(r.Timeline, reports.Event{At: w.Start, Label: label, Until: w.End})
	}
	if v.Replies == 0 && !v.Unrecovered {
		r.fail(kindNothingSeen, "%s: no reply captured at the client: nothing measured", f.name)
	}
	r.Evidence = append(r.Evidence, reports.Evidence{File: c.File, Time: faultAt,
		Note: fmt.Sprintf("%s on %s; %d loss windows; longest %.0f ms; %d of %d probes lost", f.name, entry, len(v.Windows), worst.DurationMs, v.Lost, v.Requests)})
	return entry, nil
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
