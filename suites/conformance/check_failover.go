package conformance

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"encoding/json"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/faults"
	"v6lab.dev/v6lab/labs/runtime"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/reports"
)

// A UDP probe stream from the client to a VIP runs while the router link of the node it
// enters through goes down; the outage (from the replies' timestamps at the client) must
// stay within the failure detection time the spec configures (BGP hold time, or BFD's).
// The control is a failure BGP cannot see: the same link silently drops the probes while
// its BGP session stays up; the outage lasts as long as the failure and the check fails.
func failover() Check {
	return Check{
		Name:    "failover",
		Applies: always,
		Variant: "the entry node's router link drops the probe stream while BGP stays up (a failure only BFD-like detection would see), for longer than the detection time",
		Expect:  kindOutageOverBudget,
		Run:     runFailover,
	}
}

// fault is one failure the failover check injects on the stream's entry node; it
// returns when the failure was injected and when it was undone, and how long the
// node's router took to withdraw the VIP's path through the node (-1: not measured).
type fault struct {
	name   string
	inject func(ctx context.Context, x *Lab, n *kubeNode, hold time.Duration) (at, restored time.Time, withdrawn time.Duration, err error)
	// timed: only a timer (BFD's or BGP's hold timer) finds this failure, so one
	// outage spreads by itself over the timer's interval (see detectionSpread).
	timed bool
}

// failoverFaults are the failures of the check: (c) the node's router link goes down,
// (b) the node's BGP session is shut on its router, (a) the node stops (frozen, and its
// link silent without going down: only BFD or the hold timer finds out).
var failoverFaults = []fault{
	{"link-down", func(ctx context.Context, x *Lab, n *kubeNode, hold time.Duration) (time.Time, time.Time, time.Duration, error) {
		return around(ctx, x, n, hold,
			func(ctx context.Context) error {
				_, err := x.Exec(ctx, n.Router, "ip", "link", "set", n.RouterIface, "down")
				return err
			},
			func(ctx context.Context) error {
				_, err := x.Exec(ctx, n.Router, "ip", "link", "set", n.RouterIface, "up")
				return err
			})
	}, false},
	{"session-down", func(ctx context.Context, x *Lab, n *kubeNode, hold time.Duration) (time.Time, time.Time, time.Duration, error) {
		vty := func(ctx context.Context, cmd string) error {
			_, err := x.Exec(ctx, n.Router, "vtysh", "-c", "configure terminal", "-c", "router bgp "+fmt.Sprint(n.RouterASN), "-c", cmd)
			return err
		}
		return around(ctx, x, n, hold,
			func(ctx context.Context) error { return vty(ctx, "neighbor "+n.Announcer.String()+" shutdown") },
			func(ctx context.Context) error { return vty(ctx, "no neighbor "+n.Announcer.String()+" shutdown") })
	}, false},
	{"node-stopped", func(ctx context.Context, x *Lab, n *kubeNode, hold time.Duration) (time.Time, time.Time, time.Duration, error) {
		// A node that dies without its link going down: its processes frozen, and
		// nothing in or out of its link any more (a frozen container's kernel datapath
		// would go on forwarding). Only BFD or the hold timer can find out.
		c := x.Plan.ContainerName(n.Name)
		rules := faults.Blackhole("v6lab_nodestop", n.RouterIface)
		return around(ctx, x, n, hold,
			func(ctx context.Context) error {
				if _, err := x.ExecStdin(ctx, n.Router, rules, "nft", "-f", "-"); err != nil {
					return err
				}
				_, err := run(ctx, "docker", []string{"pause", c}, "")
				return err
			},
			func(ctx context.Context) error {
				_, err := run(ctx, "docker", []string{"unpause", c}, "")
				if _, derr := x.Exec(ctx, n.Router, faults.Remove("v6lab_nodestop")...); err == nil {
					err = derr
				}
				return err
			})
	}, true},
}

// around injects a failure, measures the withdrawal at the node's router, keeps the
// failure for the detection time plus two seconds, and undoes it — always: a failed
// or half-done injection, and an interrupted run (ctx cancelled), are undone too, on a
// context of their own.
func around(ctx context.Context, x *Lab, n *kubeNode, hold time.Duration, do, undo func(context.Context) error) (time.Time, time.Time, time.Duration, error) {
	undoAlways := func() error {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		return undo(uctx)
	}
	if err := do(ctx); err != nil {
		_ = undoAlways()
		return time.Time{}, time.Time{}, -1, err
	}
	at := time.Now()
	keep := hold + 2*time.Second
	withdrawn := waitWithdrawn(ctx, x, n.Router, n.vip, n.Announcer, keep)
	if rest := keep - time.Since(at); rest > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(rest):
		}
	}
	err := undoAlways()
	if err == nil {
		err = ctx.Err()
	}
	return at, time.Now(), withdrawn, err
}

// probeInterval is the failover stream's: one probe per 10 ms.
const probeInterval = 10 * time.Millisecond

// detectionSpread is how far one timer-detected outage lies from another by itself: the
// failure falls anywhere between two of the peer's packets, so detection comes between
// (multiplier-1) and multiplier BFD receive intervals after it, or between hold minus
// keepalive and hold seconds. v6lab compare widens its tolerance by it.
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

// The control: the link to the entry node drops the stream while BGP stays up.
var silentDrop = fault{"silent-drop", func(ctx context.Context, x *Lab, n *kubeNode, hold time.Duration) (time.Time, time.Time, time.Duration, error) {
	rules := fmt.Sprintf("add table inet v6lab_negative\nadd chain inet v6lab_negative forward_c { type filter hook forward priority -300; }\nadd rule inet v6lab_negative forward_c oifname %s udp dport %d drop\n", n.RouterIface, ProbePort)
	remove := func() error {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_, err := x.Exec(uctx, n.Router, faults.Remove("v6lab_negative")...)
		return err
	}
	if _, err := x.ExecStdin(ctx, n.Router, rules, "nft", "-f", "-"); err != nil {
		_ = remove()
		return time.Time{}, time.Time{}, -1, err
	}
	at := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(hold + 3*time.Second):
	}
	err := remove()
	if err == nil {
		err = ctx.Err()
	}
	return at, time.Now(), -1, err
}, false}

func runFailover(ctx context.Context, x *Lab, control bool) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	limit := threshold(x)
	r.figure("threshold_ms", float64(limit.Milliseconds()))
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
		if err := measureFault(ctx, x, f, limit, &r); err != nil {
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
func vipRoutes(ctx context.Context, x *Lab, vip netip.Addr) (map[string]runtime.Route, error) {
	st, err := runtime.GetStatus(ctx, x.Plan)
	if err != nil {
		return nil, err
	}
	want := netip.PrefixFrom(vip, 128).String()
	routes := map[string]runtime.Route{}
	for _, rt := range st.Routes {
		if rt.Prefix == want {
			routes[rt.Router] = rt
		}
	}
	return routes, nil
}

// waitPaths waits until every router's next hops toward the VIP are those of want.
func waitPaths(ctx context.Context, x *Lab, vip netip.Addr, want map[string]runtime.Route, timeout time.Duration) error {
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
// failure on that node, and adds the outage to r. A stream seen through two nodes, or
// one a stopped node cost nothing, left its node: another stream is tried.
func measureFault(ctx context.Context, x *Lab, f fault, limit time.Duration, r *Result) error {
	// A stream that enters through the backend's node costs ~2 s; where half the paths
	// lead there (one leaf serves only that node), 16 of them in a row happen once in
	// 65,536 faults.
	const maxAttempts = 16
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		entry, out, err := failoverOnce(ctx, x, f, limit, attempt, r)
		if err != nil {
			return err
		}
		if entry == "" {
			continue
		}
		r.figure("attempts_"+f.name, float64(attempt))
		if out > float64(limit.Milliseconds()) {
			r.fail(kindOutageOverBudget, "%s of %s: outage %.0f ms exceeds the %s the spec's detection allows", f.name, entry, out, limit)
		}
		return nil
	}
	return fmt.Errorf("none of %d probe streams entered through one node other than the backend's and stayed on it: no failover to measure", maxAttempts)
}

func failoverOnce(ctx context.Context, x *Lab, f fault, limit time.Duration, attempt int, r *Result) (string, float64, error) {
	ns := x.Plan.Apps[0].Namespace
	vip, err := x.VIP(ctx, ns, DSRSvc)
	if err != nil {
		return "", 0, err
	}
	client := x.Plan.HostByRole("client")
	hold := time.Duration(x.Lab.Spec.Spec.BGP.HoldSeconds) * time.Second
	total := hold + 8*time.Second
	name := fmt.Sprintf("failover-%s-%d", f.name, attempt)
	clientPt := x.HostLink("client")
	var entry string
	var faultAt, restoredAt time.Time
	var sum ProbeSummary
	withdrawn := time.Duration(-1)
	caps, err := x.Capture(ctx, name, capture.Filter{Proto: "udp", Port: ProbePort}, []string{clientPt}, func() error {
		done := make(chan error, 1)
		go func() {
			var err error
			sum, err = x.ProbeUDP(ctx, client.Name, netip.AddrPortFrom(vip, ProbePort), "--interval", probeInterval.String(), "--duration", total.String(), "--wait", "500ms")
			done <- err
		}()
		// The entry node: a short capture on every node's uplink.
		var points []string
		for _, n := range x.Plan.KubeNodes {
			points = append(points, x.Uplink(n.Name))
		}
		time.Sleep(500 * time.Millisecond)
		probe, err := x.Capture(ctx, name+"-entry", capture.Filter{Proto: "udp", Port: ProbePort}, points, func() error {
			time.Sleep(500 * time.Millisecond)
			return nil
		})
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
		if len(entries) == 1 {
			entry = entries[0]
		}
		if entry == "" || entry == x.DSRNode() {
			// Through two nodes: the routers moved the flow while the entry was
			// captured; a fault on either node would not measure this stream.
			slog.Info("failover: the stream entered through the backend's node, through more than one node, or was not seen; another flow", "fault", f.name, "attempt", attempt, "entries", entries)
			entry = ""
			_, _ = x.Exec(ctx, client.Name, "pkill", "-f", "v6lab-probe send")
			<-done
			return nil
		}
		n := x.node(entry)
		n.vip = vip
		faultAt, restoredAt, withdrawn, err = f.inject(ctx, x, n, hold)
		if err != nil {
			<-done
			return err
		}
		return <-done
	})
	if err != nil || entry == "" {
		return "", 0, err
	}
	r.pcaps(caps)
	c := caps[clientPt]
	v := verdict.Outage(c.Packets, verdict.Match{Proto: "udp", Src: vip, Dst: client.Address}, 0, 0)
	var worst verdict.Window
	for _, w := range v.Windows {
		if w.DurationMs > worst.DurationMs {
			worst = w
		}
	}
	if f.timed && v.Packets > 0 && len(v.Windows) == 0 {
		// A node stopped under the stream loses probes until a timer finds it; none
		// lost means the routers moved the stream off that node before the fault
		// (seen once: the flow left the node while the entry was captured), so this
		// stream measured nothing.
		slog.Info("failover: the stream lost nothing when its entry node stopped: it no longer crossed that node; another flow", "fault", f.name, "attempt", attempt, "entry", entry)
		return "", 0, nil
	}
	r.figure("outage_ms_"+f.name, worst.DurationMs)
	r.figure("lost_"+f.name, float64(sum.Sent-sum.Received))
	switch {
	case f.timed: // the timer's spread: the outage's, the withdrawal's, the lost probes'
		spread := detectionSpread(x)
		r.figure(reports.SpreadPrefix+f.name, float64(spread.Milliseconds()))
		r.figure(reports.SpreadLostPrefix+f.name, float64(spread/probeInterval))
	case withdrawn >= 0:
		// Seen at once by the routers: the stream may have had another way at the
		// node's router (no outage) or none until the withdrawal reached the routers
		// upstream, so one outage lies between 0 and about the withdrawal time of the
		// same run, measured at the node's router (link-down: outages of 0, 0, 68 and
		// 106 ms, withdrawals 80-85 ms; compare adds its 100 ms for the rest). The
		// withdrawal time itself keeps the plain tolerance.
		r.figure(reports.SpreadOf("outage_ms_"+f.name), float64(withdrawn.Milliseconds()))
		r.figure(reports.SpreadLostPrefix+f.name, float64(withdrawn/probeInterval))
	}
	if withdrawn >= 0 {
		r.figure("withdraw_ms_"+f.name, float64(withdrawn.Milliseconds()))
	}
	r.Timeline = append(r.Timeline, reports.Event{At: faultAt, Label: f.name + ": " + entry, Until: restoredAt})
	for _, w := range v.Windows {
		r.Timeline = append(r.Timeline, reports.Event{At: w.Start, Label: fmt.Sprintf("no replies (%.0f ms)", w.DurationMs), Until: w.End})
	}
	if v.Packets == 0 {
		r.fail(kindNothingSeen, "%s: no reply captured at the client: nothing measured", f.name)
	}
	r.Evidence = append(r.Evidence, reports.Evidence{File: c.File, Time: faultAt,
		Note: fmt.Sprintf("%s on %s; %d loss windows; longest %.0f ms", f.name, entry, len(v.Windows), worst.DurationMs)})
	return entry, worst.DurationMs, nil
}

// waitWithdrawn polls the router (vtysh JSON) until its route to the VIP no longer goes
// through the node; it returns how long that took (-1: not within limit).
func waitWithdrawn(ctx context.Context, x *Lab, router string, vip, node netip.Addr, limit time.Duration) time.Duration {
	start := time.Now()
	for time.Since(start) < limit {
		out, err := x.Exec(ctx, router, "vtysh", "-c", fmt.Sprintf("show bgp ipv6 unicast %s/128 json", vip))
		if err == nil && !routeVia([]byte(out), node) {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return -1
}

// routeVia reports whether a `show bgp ipv6 unicast PREFIX json` document has a path
// learned from, or through, addr.
func routeVia(doc []byte, addr netip.Addr) bool {
	var d struct {
		Paths []struct {
			Peer struct {
				PeerID string `json:"peerId"`
			} `json:"peer"`
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
		} `json:"paths"`
	}
	if json.Unmarshal(doc, &d) != nil {
		return true // unreadable: not withdrawn as far as we know
	}
	for _, p := range d.Paths {
		if a, err := netip.ParseAddr(p.Peer.PeerID); err == nil && a == addr {
			return true
		}
		for _, n := range p.Nexthops {
			if a, err := netip.ParseAddr(n.IP); err == nil && a == addr {
				return true
			}
		}
	}
	return false
}
