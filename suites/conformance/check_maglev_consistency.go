package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/gopacket/gopacket/layers"
	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/faults"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/reports"
)

// The same flows enter the cluster through each node in turn (static routes on the
// edge and the ToR steer the VIP, undone afterwards): with Maglev every node picks the
// same backend for a flow, so each flow's requests show on the same backend's veth
// whichever node they entered by. Beside them, in DSR labs, long-lived TCP connections
// are moved from node to node the same way and must survive every move: no reset, and
// data echoed after the last one. Judged from the captures: the entry of each phase on
// the nodes' uplinks, each flow's backend on the backends' veths (by time: the flows
// run one after another), each connection on the client's link. Variant: the same
// backends behind a Service annotated service.cilium.io/lb-algorithm: random, where
// every node picks a backend of its own.
func maglevConsistency() Check {
	return Check{
		Name:       "maglev-consistency",
		Concurrent: withServices,
		Applies: func(x *Lab) string {
			if why := routedVIPs(x); why != "" {
				return why
			}
			if a := x.Lab.Spec.Spec.LoadBalancer.Algorithm; a != "maglev" {
				return "the lab's load balancer algorithm is " + a + ": no node promises to pick the backend another picked"
			}
			return ""
		},
		Variant: "the same backends behind a Service annotated service.cilium.io/lb-algorithm: random, on which each node picks a backend of its own",
		Expect:  kindBackendsDiffer,
		Run:     runMaglev,
	}
}

// kindBackendsDiffer: one flow reached different backends through different entry nodes.
const kindBackendsDiffer = "backends-differ"

// maglevFlows is how many flows (source ports) enter through each node: with random
// selection and three backends, all of them agree on every node but once in 9^4 runs.
const maglevFlows = 4

// maglevSport is the first flow's source port.
const maglevSport = 41001

// maglevTCPLimit bounds the moved TCP connections' life: they are stopped when the last
// phase is over, long before it (each phase takes 1.5 s, or as long as its probes).
const maglevTCPLimit = 30 * time.Second

// stopTCP interrupts the client's `v6lab-probe tcp` to vip (SIGINT: the probe stops
// writing, waits for the echo of what is in flight and closes its connections cleanly).
// Only this check opens TCP connections to that VIP from the client while it runs.
func stopTCP(ctx context.Context, x *Lab, client string, vip netip.Addr) {
	_, _ = x.Exec(ctx, client, "pkill", "-INT", "-f", tcpProbePattern(netip.AddrPortFrom(vip, TCPPort)))
}

// maglevPhase is one entry node's turn: when it began and ended, and when each flow
// ran in it.
type maglevPhase struct {
	node       string
	start, end time.Time
	flows      [maglevFlows][2]time.Time
}

func runMaglev(ctx context.Context, x *Lab, control bool) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	ns, svc := x.Plan.Apps[0].Namespace, EchoName
	if control {
		svc = RandomSvc
	}
	vip, pods, veths, err := x.echoBehind(ctx, ns, svc, 2)
	if err != nil {
		return r, err
	}
	var uplinks []string
	for _, n := range x.Plan.KubeNodes {
		uplinks = append(uplinks, x.Uplink(n.Name))
	}
	clientPt := x.HostLink("client")
	client := x.Plan.HostByRole("client")
	withTCP := tcpPromised(x)
	var phases []maglevPhase
	var moved time.Time // the last change of entry node
	points := append(append([]string{clientPt}, uplinks...), veths...)
	caps, err := x.Capture(ctx, "maglev"+suffix(control), capture.Filter{IPv6Only: true}, points, func() error {
		var undo func() error = func() error { return nil }
		defer func() { _ = undo() }()
		var wg sync.WaitGroup
		var tcpErr error
		var tcpStart time.Time
		// The connections run until the last phase is over (its probes take as long as
		// the lab is busy: with the concurrent checks, each phase took 3 s for its
		// 1.5), then the probe is interrupted: it stops writing, lets the echo of what
		// is in flight come back and closes the connections cleanly. On any exit;
		// before the steering is undone when the phases ran to the end.
		endConns := func() {}
		defer func() { endConns() }()
		for i, n := range x.Plan.KubeNodes {
			// The previous steering goes first: two nodes behind one ToR share the
			// edge's route.
			if err := undo(); err != nil {
				return err
			}
			steer, err := steerVIP(ctx, x, vip, n)
			if err != nil {
				return err
			}
			if undo, err = faults.Inject(ctx, steer); err != nil {
				return err
			}
			ph := maglevPhase{node: n.Name, start: time.Now()}
			if i == 0 && withTCP {
				// Opened through the first node, they run through every phase.
				tcpStart = time.Now()
				endConns = sync.OnceFunc(func() {
					stopTCP(context.WithoutCancel(ctx), x, client.Name, vip)
					wg.Wait()
				})
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, tcpErr = x.ProbeTCP(ctx, client.Name, netip.AddrPortFrom(vip, TCPPort), "--conns", "4", "--interval", "50ms", "--duration", maglevTCPLimit.String())
				}()
			}
			if i > 0 {
				moved = ph.start
			}
			if withTCP && time.Since(tcpStart) > maglevTCPLimit-2*time.Second {
				return fmt.Errorf("the phases outlasted the TCP connections (%s): no connection moved to %s is measured", maglevTCPLimit, n.Name)
			}
			for f := range maglevFlows {
				ph.flows[f][0] = time.Now()
				if _, err := x.ProbeUDP(ctx, client.Name, netip.AddrPortFrom(vip, ProbePort), "--count", "3", "--interval", "10ms", "--wait", "200ms", "--sport", fmt.Sprint(maglevSport+f)); err != nil {
					return err
				}
				ph.flows[f][1] = time.Now()
			}
			time.Sleep(time.Until(ph.start.Add(1500 * time.Millisecond)))
			ph.end = time.Now()
			phases = append(phases, ph)
		}
		endConns()
		if err := undo(); err != nil {
			return err
		}
		// A connection reset by the move fails in the probe; the wire judges it.
		_ = tcpErr
		return nil
	}, silentOK(append(uplinks, veths...)...))
	if err != nil {
		return r, err
	}
	r.pcaps(caps)
	if err := judgeEntries(x, caps, phases, client.Address, vip); err != nil {
		return r, err
	}
	judgeMaglev(pods, veths, caps, phases, client.Address, x.Plan.Pods.Block, &r)
	if withTCP {
		if err := judgeMovedTCP(caps[clientPt], vip, client.Address, moved, &r); err != nil {
			return r, err
		}
	} else {
		r.Evidence = append(r.Evidence, reports.Evidence{Note: "no TCP connection is moved between nodes: only a DSR lab with Maglev promises that one survives (the entry node holds SNAT state)"})
	}
	return r, nil
}

// judgeEntries checks that the steering took: in each phase the client's requests to
// the VIP arrive only on the uplink of that phase's node. It is an error (nothing
// proven), not a failure of the load balancer.
func judgeEntries(x *Lab, caps map[string]Captured, phases []maglevPhase, client, vip netip.Addr) error {
	for _, ph := range phases {
		for _, n := range x.Plan.KubeNodes {
			seen := 0
			for _, p := range caps[x.Uplink(n.Name)].Packets {
				if p.IPv6 && p.Src == client && p.Dst == vip && p.Proto == layers.IPProtocolUDP && p.SrcPort >= maglevSport && p.SrcPort < maglevSport+maglevFlows && !p.Time.Before(ph.start) && !p.Time.After(ph.end) {
					seen++
				}
			}
			switch {
			case n.Name == ph.node && seen == 0:
				return fmt.Errorf("the flows steered through %s never showed on its uplink: the steering did not take", ph.node)
			case n.Name != ph.node && seen > 0:
				return fmt.Errorf("while steered through %s, %d requests entered through %s: the steering did not take", ph.node, seen, n.Name)
			}
		}
	}
	return nil
}

// judgeMaglev finds each flow's backend in each phase — the pod whose veth shows the
// flow's replies (to its port) while it ran (a veth shows what its pod sends; a pod's
// own probes, and its replies to pods of podBlock, are other checks'; a reply to the
// flow before, late under load, is that flow's: measured, one 500 ms after its
// request, in the next flow's window) — and fails when a flow's backends differ
// between phases.
func judgeMaglev(pods []Pod, veths []string, caps map[string]Captured, phases []maglevPhase, client netip.Addr, podBlock netip.Prefix, r *Result) {
	consistent := 0
	for f := range maglevFlows {
		var picked []string // the backend's node in each phase
		for _, ph := range phases {
			var at []string
			for i, p := range pods {
				c := caps[veths[i]]
				for j := range c.Packets {
					q := &c.Packets[j]
					s := q.Sent()
					if s.Probe == nil || !s.Probe.Reply || podBlock.Contains(s.Dst) || s.DstPort != uint16(maglevSport+f) || q.Time.Before(ph.flows[f][0]) || q.Time.After(ph.flows[f][1]) {
						continue
					}
					at = append(at, p.Node)
					if f == 0 {
						r.Evidence = append(r.Evidence, reports.Evidence{File: c.File, Frame: q.Index, Time: q.Time, Src: s.Src.String(), Dst: s.Dst.String(),
							Note: fmt.Sprintf("flow from port %d, entered through %s, at backend %s on %s", maglevSport+f, ph.node, p.Name, p.Node)})
					}
					break
				}
			}
			switch len(at) {
			case 0:
				r.fail(kindNothingSeen, "flow from port %d entered through %s: no backend's veth shows it", maglevSport+f, ph.node)
				picked = append(picked, "")
			case 1:
				picked = append(picked, at[0])
			default:
				r.fail(kindBackendsDiffer, "flow from port %d entered through %s and reached %d backends (%v)", maglevSport+f, ph.node, len(at), at)
				picked = append(picked, fmt.Sprint(at))
			}
		}
		same := true
		for _, b := range picked[1:] {
			same = same && b == picked[0]
		}
		if same && picked[0] != "" {
			consistent++
			continue
		}
		var by []string
		for i, ph := range phases {
			by = append(by, fmt.Sprintf("via %s → %s", ph.node, picked[i]))
		}
		r.fail(kindBackendsDiffer, "flow from port %d reached different backends by entry node: %v", maglevSport+f, by)
	}
	r.figure("flows", maglevFlows)
	r.figure("entry_nodes", float64(len(phases)))
	r.figure("flows_same_backend", float64(consistent))
}

// judgeMovedTCP judges the connections moved from node to node: each one that the
// capture saw open must show no reset and echoed data after the last move.
func judgeMovedTCP(c Captured, vip, client netip.Addr, moved time.Time, r *Result) error {
	streams, err := verdict.TCPStreams(verdict.Slice(c.Packets), verdict.Match{Port: TCPPort}, client)
	if err != nil {
		return err
	}
	conns, survived := 0, 0
	for _, s := range streams {
		if !s.Handshake || s.Server.Addr() != vip {
			continue
		}
		conns++
		switch {
		case s.Resets > 0:
			r.fail(kindTCPReset, "tcp %s was reset by the %s at %s, when it moved between entry nodes", s.Client, s.ResetBy, s.ResetAt.Format("15:04:05.000"))
			r.Timeline = append(r.Timeline, reports.Event{At: s.ResetAt, Label: fmt.Sprintf("tcp %s reset by the %s", s.Client, s.ResetBy)})
		case !s.Survived(moved):
			r.fail(kindTCPLost, "tcp %s carried no data from the server after its last move (%s)", s.Client, moved.Format("15:04:05.000"))
		default:
			survived++
		}
	}
	if conns == 0 {
		r.fail(kindNothingSeen, "no TCP connection to %s was seen opening on the client's link", vip)
	}
	r.figure("tcp_conns", float64(conns))
	r.figure("tcp_survived", float64(survived))
	r.Evidence = append(r.Evidence, reports.Evidence{File: c.File, Note: fmt.Sprintf("%d of %d TCP connections survived every change of entry node", survived, conns)})
	return nil
}
