package conformance

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/faults"
	"v6lab.dev/v6lab/labs/runtime"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/reports"
)

// On a layer 2 segment, the node that owns a VIP stops (powered off: its switch port
// down, its container paused) under a 10 ms UDP stream from the client; another
// node's speaker takes the VIP over and advertises it unsolicited. Measured from the
// captures: the time from the stop to the new owner's first Neighbor Advertisement (on
// the router's segment port) and to the first reply after the outage (at the client),
// within a budget derived from MetalLB's memberlist timers. The VIP is a Service of
// the check's own whose single backend runs on another node than the owner, so that
// only the announcement fails over. Control: the owner's switch port goes down while
// the node and its speaker stay up — a failure memberlist cannot see — for longer than
// the budget: the outage lasts as long as the failure.
func l2Failover() Check {
	return Check{
		Name:      "l2-failover",
		Applies:   onSegment,
		Variant:   "the owner's switch port goes down while the node and its speaker stay up (memberlist cannot see it), for the budget and three seconds more",
		Expect:    kindOutageOverBudget,
		PassDrops: agentRestartDrops,
		// The owner's segment port down and up again: its agent counted 4 ingress
		// packets as "Stale or unroutable IP" over the control (2026-12-03, 1.20.2).
		ControlDrops: []string{reasonStaleIP},
		Run:          runL2Failover,
	}
}

// L2FailoverSvc is the check's own Service (first application, the DSR backend).
const L2FailoverSvc = "l2-failover"

// memberlist's DefaultLANConfig, which MetalLB's speakers use (v0.15): configuration.
const (
	mlProbeInterval = time.Second
	mlSuspicionMult = 4
)

// l2Budget is the longest a VIP may stay unanswered after its owner stops: memberlist
// probes each other member once per probe interval (the stopped one within n-1
// intervals), spends one more on the failed probe and its indirect probes, then
// suspects the node for SuspicionMult x max(1, log10 n) intervals (with three nodes no
// confirmation shortens or lengthens it) before it declares it dead; a second more
// for the new owner's speaker to advertise and the router to switch. Configuration.
func l2Budget(nodes int) time.Duration {
	suspicion := time.Duration(float64(mlSuspicionMult) * math.Max(1, math.Log10(float64(max(nodes, 1)))) * float64(mlProbeInterval))
	return time.Duration(nodes-1)*mlProbeInterval + mlProbeInterval + suspicion + time.Second
}

func runL2Failover(ctx context.Context, x *Lab, control bool) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	budget := l2Budget(len(x.Plan.KubeNodes))
	r.config("budget_ms", float64(budget.Milliseconds()))
	ns := x.Plan.Apps[0].Namespace
	vip, owner, remove, err := x.l2ServiceAwayFrom(ctx, ns, L2FailoverSvc, nil, 0)
	defer remove()
	if err != nil {
		return r, err
	}
	macs, err := x.segmentMACs(ctx)
	if err != nil {
		return r, err
	}
	var ownerMAC verdict.MAC
	for m, n := range macs {
		if n == owner {
			ownerMAC = m
		}
	}
	port := x.Plan.Segment.Port(owner)
	fault := x.Faults().SegmentNodeStop(owner, x.Plan.Segment.Switch, port.SwitchIface)
	hold := budget + 4*time.Second
	if control {
		fault = x.Faults().LinkDown(x.Plan.Segment.Switch, port.SwitchIface)
		hold = budget + 3*time.Second
	}
	const lead = 2 * time.Second
	client := x.Plan.HostByRole("client")
	clientPt, segPt := x.HostLink("client"), x.segmentPoint()
	var faultAt, restoredAt time.Time
	caps, err := x.Capture(ctx, "l2-failover"+suffix(control), capture.Filter{IPv6Only: true}, []string{clientPt, segPt}, func() error {
		errc := make(chan error, 1)
		go func() {
			_, err := x.ProbeUDP(ctx, client.Name, netip.AddrPortFrom(vip, ProbePort), "--interval", probeInterval.String(),
				"--duration", (lead + hold + 2*time.Second).String(), "--wait", "500ms")
			errc <- err
		}()
		select {
		case err := <-errc:
			return fmt.Errorf("the stream ended before the fault: %v", err)
		case <-time.After(lead):
		}
		faultAt = time.Now()
		undo, err := faults.Inject(ctx, fault)
		if err == nil {
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case <-time.After(hold):
			}
		}
		if uerr := undo(); err == nil {
			err = uerr
		}
		restoredAt = time.Now()
		if serr := <-errc; err == nil {
			err = serr
		}
		return err
	})
	// The stopped node thawed: its agent and kubelet catch up before anything else runs.
	if werr := runtime.WaitReady(ctx, x.Plan, x.Kubeconfig, 5*time.Minute); err == nil && werr != nil {
		err = fmt.Errorf("after the fault: %w", werr)
	}
	if err != nil {
		return r, err
	}
	r.pcaps(caps)
	r.Timeline = append(r.Timeline, reports.Event{At: faultAt, Until: restoredAt, Label: fault.Name + ": " + owner})
	r.Evidence = append(r.Evidence, reports.Evidence{Note: fmt.Sprintf("VIP %s (Service %s/%s, backend on %s), owned by %s (%s) before the fault",
		vip, ns, L2FailoverSvc, x.DSRNode(), owner, ownerMAC)})

	// The new owner's first advertisement after the fault, on the router's port.
	seg := caps[segPt]
	for _, a := range verdict.NDPAnswers(after(seg.Packets, faultAt), vip) {
		if a.MAC == ownerMAC {
			continue
		}
		ms := float64(a.First.Time.Sub(faultAt).Microseconds()) / 1000
		r.figure("new_owner_advertised_ms", ms)
		r.Evidence = append(r.Evidence, reports.Evidence{File: seg.File, Frame: a.First.Index, Time: a.First.Time,
			Note: fmt.Sprintf("%s (%s) advertised %s %.0f ms after the fault (%d unsolicited of %d)", macs[a.MAC], a.MAC, vip, ms, a.Unsolicited, a.Count)})
		r.Timeline = append(r.Timeline, reports.Event{At: a.First.Time, Label: "new owner " + macs[a.MAC] + " advertises"})
		break
	}

	c := caps[clientPt]
	v, err := verdict.OutageOf(verdict.Slice(c.Packets), verdict.Match{Proto: "udp", Port: ProbePort},
		verdict.OutageOptions{Client: client.Address, MaxLost: -1, MinGap: 10 * probeInterval})
	if err != nil {
		return r, err
	}
	var worst verdict.Window
	for _, w := range v.Windows {
		if w.DurationMs > worst.DurationMs {
			worst = w
		}
	}
	switch {
	case v.Unrecovered:
		r.fail(kindUnrecovered, "the stream to %s never came back after %s", vip, fault.Name)
	case worst.DurationMs == 0:
		r.fail(kindNothingSeen, "no outage at all: the stream to %s did not cross %s at %s", vip, owner, fault.Name)
	default:
		r.figure("outage_ms", worst.DurationMs)
		r.figure("first_reply_ms", float64(worst.End.Sub(faultAt).Microseconds())/1000)
		r.Timeline = append(r.Timeline, reports.Event{At: worst.Start, Until: worst.End, Label: fmt.Sprintf("no reply: %.0f ms", worst.DurationMs), Kind: "outage"})
		r.Evidence = append(r.Evidence, reports.Evidence{File: c.File, Frame: worst.FirstAfter, Time: worst.End,
			Note: fmt.Sprintf("first reply after the outage: %.0f ms of silence", worst.DurationMs)})
		if time.Duration(worst.DurationMs*float64(time.Millisecond)) > budget {
			r.fail(kindOutageOverBudget, "%s unanswered for %.0f ms after %s (budget %s)", vip, worst.DurationMs, fault.Name, budget)
		}
	}
	if _, ok := r.Figures["new_owner_advertised_ms"]; !ok && !control {
		r.fail(kindUnanswered, "no other node advertised %s after %s", vip, fault.Name)
	}
	return r, nil
}

// after keeps the packets at or after t.
func after(pkts []verdict.Packet, t time.Time) []verdict.Packet {
	for i := range pkts {
		if !pkts[i].Time.Before(t) {
			return pkts[i:]
		}
	}
	return nil
}

// l2ServiceAwayFrom creates a LoadBalancer Service of the DSR backend (first
// application) whose VIP is owned by another node than the backend's: it asks MetalLB
// for addresses from the pool's end, counted back from offset
// (metallb.io/loadBalancerIPs), in turn until the router reaches one through another
// node (MetalLB elects by a hash of node and address: a few tries at most). remove
// deletes the Service (on a context of its own); call it on every exit, errors too.
func (x *Lab) l2ServiceAwayFrom(ctx context.Context, ns, name string, annotations map[string]string, offset int) (vip netip.Addr, owner string, remove func(), err error) {
	svcs := x.Client.CoreV1().Services(ns)
	remove = func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = svcs.Delete(dctx, name, metav1.DeleteOptions{})
	}
	_, last := x.Plan.VIPRange(x.Plan.Apps[0])
	const tries = 8
	for i := range tries {
		want := last
		for range offset + i {
			want = want.Prev()
		}
		_ = svcs.Delete(ctx, name, metav1.DeleteOptions{})
		if err := waitGone(ctx, func(ctx context.Context) error {
			_, err := svcs.Get(ctx, name, metav1.GetOptions{})
			return err
		}); err != nil {
			return netip.Addr{}, "", remove, err
		}
		ann := map[string]string{"metallb.io/loadBalancerIPs": want.String()}
		for k, v := range annotations {
			ann[k] = v
		}
		if err := x.applyServices(ctx, LBService(ns, name, DSRName, ann)); err != nil {
			return netip.Addr{}, "", remove, err
		}
		deadline := time.Now().Add(time.Minute)
		for {
			if vip, err = x.VIP(ctx, ns, name); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return netip.Addr{}, "", remove, fmt.Errorf("%s: %w", want, err)
			}
			time.Sleep(time.Second)
		}
		if vip != want {
			return netip.Addr{}, "", remove, fmt.Errorf("MetalLB gave %s, not the %s asked", vip, want)
		}
		if err := x.WaitServiceBackends(ctx, vip, 1, 2*time.Minute); err != nil {
			return netip.Addr{}, "", remove, err
		}
		if owner, err = x.segmentOwner(ctx, vip); err != nil {
			return netip.Addr{}, "", remove, err
		}
		if owner != x.DSRNode() {
			return vip, owner, remove, nil
		}
	}
	return netip.Addr{}, "", remove, fmt.Errorf("each of %d VIPs was owned by the backend's node %s", tries, x.DSRNode())
}

// waitGone waits (up to a minute) until get reports the object gone.
func waitGone(ctx context.Context, get func(context.Context) error) error {
	deadline := time.Now().Add(time.Minute)
	for get(ctx) == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("still there after a minute")
		}
		time.Sleep(500 * time.Millisecond)
	}
	return nil
}
