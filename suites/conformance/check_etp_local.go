package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/hubble"
	"v6lab.dev/v6lab/reports"
)

// A Service with externalTrafficPolicy Local whose only backend runs on one node is
// announced from that node alone: every router's route to its VIP goes only through
// that node (or, away from its leaf, toward it). On the wire: the client's requests
// enter only through the backend's node, and arrive there from the client's own
// address (the source is preserved); every one is answered; and a request forced
// through another node (a static route on the routers, undone afterwards) is dropped
// there, never forwarded to the backend. Control: the same backend behind an
// externalTrafficPolicy Cluster Service in SNAT mode — announced by every node, and
// forwarded from them with the entry node's address.
func etpLocal() Check {
	return Check{
		Name:       "etp-local",
		Concurrent: withPods,
		Applies:    routedVIPs,
		Variant:    "the same backend behind a Service with externalTrafficPolicy Cluster in SNAT mode (every node announces it and forwards to the backend)",
		Expect:     kindRouteViaNonBackend,
		Run: func(ctx context.Context, x *Lab, control bool) (Result, error) {
			svc := LocalSvc
			if control {
				svc = SNATSvc
			}
			ns := x.Plan.Apps[0].Namespace
			vip, err := x.VIP(ctx, ns, svc)
			if err != nil {
				return Result{}, err
			}
			backend := x.DSRNode()
			var r Result
			// Announcements converge: poll until the expected verdict, at most 30 s.
			deadline := time.Now().Add(30 * time.Second)
			for {
				r = Result{Pass: true, Reason: "ok"}
				routes, err := vipRoutes(ctx, x, vip)
				if err != nil {
					return r, err
				}
				want := netip.PrefixFrom(vip, 128).String()
				for _, n := range x.Plan.KubeNodes {
					route, found := routes[n.Router]
					hop := x.announcer(n.Name)
					switch {
					case n.Name == backend && (!found || !hasHop(route.NextHops, hop)):
						r.fail(kindRouteMissing, "%s has no route for %s through the backend's node %s (%s)", n.Router, vip, n.Name, hop)
					case n.Name != backend && found && hasHop(route.NextHops, hop):
						r.fail(kindRouteViaNonBackend, "%s routes %s through %s (%s), which has no backend", n.Router, vip, n.Name, hop)
					}
					if found {
						r.Evidence = append(r.Evidence, reports.Evidence{Note: fmt.Sprintf("%s: %s via %v", n.Router, want, route.NextHops)})
					}
				}
				if r.Pass != control || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Second)
			}
			if err := etpOnTheWire(ctx, x, vip, control, &r); err != nil {
				return r, err
			}
			return r, nil
		},
	}
}

// Failure kinds of etp-local on the wire.
const (
	kindEntryViaNonBackend = "entry-via-non-backend" // a request entered through a node without a backend
	kindForwarded          = "forwarded"             // a request forced through a node without a backend was forwarded
)

// etpOnTheWire judges the Service's traffic from captures: where the client's requests
// enter, which source the backend's node sees, and what a node without a backend does
// with a request forced through it.
func etpOnTheWire(ctx context.Context, x *Lab, vip netip.Addr, control bool, r *Result) error {
	client := x.Plan.HostByRole("client")
	backend := x.DSRNode()
	var uplinks, others []string
	for _, n := range x.Plan.KubeNodes {
		uplinks = append(uplinks, x.Uplink(n.Name))
		if n.Name != backend {
			others = append(others, x.Uplink(n.Name))
		}
	}
	points := append([]string{x.HostLink("client")}, uplinks...)
	// All IPv6, not `udp port 9000`: a request one node forwards to another travels
	// inside VXLAN in tunnel mode (outer port 8472), which a port filter would hide.
	filter := capture.Filter{IPv6Only: true}
	dst := netip.AddrPortFrom(vip, ProbePort)
	var start, end time.Time
	caps, err := x.Capture(ctx, "etp-local"+suffix(control), filter, points, func() error {
		start = time.Now()
		_, err := x.ProbeUDP(ctx, client.Name, dst, "--count", "20", "--interval", "10ms", "--wait", "300ms")
		end = time.Now()
		return err
	}, silentOK(others...))
	if err != nil {
		return err
	}
	r.pcaps(caps)
	req, rep := exchange(caps[x.HostLink("client")].Packets, dst, start, end)
	if req == 0 || rep < req {
		r.fail(kindUnanswered, "%d of %d requests to %s answered at the client", rep, req, vip)
	}
	for _, pt := range others {
		if n, _ := exchange(caps[pt].Packets, dst, start, end); n > 0 {
			r.fail(kindEntryViaNonBackend, "%d requests to %s entered through %s, which has no backend", n, vip, pt)
		}
	}
	// At the backend's node, every request of the client's stream (to the VIP, or
	// already translated to the backend pod) comes from the client's own address
	// (the requests of this stream: to the VIP, or to the backend pod).
	pod, err := x.dsrBackend(ctx)
	if err != nil {
		return err
	}
	sources := map[netip.Addr]int{}
	for _, p := range caps[x.Uplink(backend)].Packets {
		s := p.Sent()
		if s.IPv6 && s.Probe != nil && !s.Probe.Reply && s.DstPort == ProbePort && (s.Dst == vip || s.Dst == pod.IP) {
			sources[s.Src]++
		}
	}
	for src, n := range sources {
		if src != client.Address {
			r.fail(kindSourceRewritten, "the backend's node saw %d requests from %s, not the client's %s", n, src, client.Address)
		}
	}
	r.figure("requests_at_backend", float64(sources[client.Address]))
	if control {
		// The SNAT Service's backend sees the entry node, not the client: Hubble's
		// record is only where the backend sees the client.
		return nil
	}
	// Hubble's account of the client's probes beside the wire's: recorded, not judged.
	probe := vipProbe("the client → the Local Service's VIP", "UDP", caps[x.HostLink("client")].Packets, client.Address, dst, ProbePort, []Pod{pod}, start, end)
	if _, _, err := x.recordHubble(ctx, r, []hubble.Probe{probe}, nil); err != nil {
		return err
	}
	if len(others) == 0 {
		return nil
	}
	return forcedThrough(ctx, x, vip, pod.IP, r)
}
