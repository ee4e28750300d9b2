package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/faults"
	"v6lab.dev/v6lab/labs/plan"
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
		Name:    "etp-local",
		Applies: always,
		Variant: "the same backend behind a Service with externalTrafficPolicy Cluster in SNAT mode (every node announces it and forwards to the backend)",
		Expect:  kindRouteViaNonBackend,
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
	// already translated to the backend pod) comes from the client's own address.
	sources := map[netip.Addr]int{}
	for _, p := range caps[x.Uplink(backend)].Packets {
		s := p.Sent()
		if s.IPv6 && s.Probe != nil && !s.Probe.Reply && s.DstPort == ProbePort {
			sources[s.Src]++
		}
	}
	for src, n := range sources {
		if src != client.Address {
			r.fail(kindSourceRewritten, "the backend's node saw %d requests from %s, not the client's %s", n, src, client.Address)
		}
	}
	r.figure("requests_at_backend", float64(sources[client.Address]))
	if control || len(others) == 0 {
		return nil
	}
	return forcedThrough(ctx, x, vip, r)
}

// forcedThrough steers the client's requests to the VIP through a node without a
// backend (static routes on the client's router and on that node's router, above
// BGP's), checks from the captures that the node dropped them — none answered, none
// reached the backend's node — and removes the routes, on any exit.
func forcedThrough(ctx context.Context, x *Lab, vip netip.Addr, r *Result) error {
	client := x.Plan.HostByRole("client")
	var n plan.KubeNode
	for _, k := range x.Plan.KubeNodes {
		if k.Name != x.DSRNode() {
			n = k
			break
		}
	}
	type steer struct{ router, via, dev string }
	steers := []steer{{n.Router, n.Address.String(), n.RouterIface}}
	if client.Router != n.Router {
		edge, iface := edgeUplink(x, x.node(n.Name))
		if edge != client.Router {
			return fmt.Errorf("etp-local: cannot steer from %s to %s (no direct link)", client.Router, n.Router)
		}
		// The next hop toward the node's router: the one the edge routes the node's
		// own link through.
		out, err := x.Exec(ctx, edge, "ip", "-6", "route", "show", n.Link.String())
		if err != nil {
			return err
		}
		via := viaOn(out, iface)
		if via == "" {
			return fmt.Errorf("etp-local: %s has no route toward %s: %q", edge, n.Link, out)
		}
		steers = append(steers, steer{edge, via, iface})
	}
	var routes []faults.Fault
	for _, s := range steers {
		routes = append(routes, x.Faults().Route(s.router, netip.PrefixFrom(vip, 128), s.via, s.dev))
	}
	undo, err := faults.Inject(ctx, faults.All("steer "+vip.String()+" through "+n.Name, routes...))
	defer func() { _ = undo() }()
	if err != nil {
		return err
	}
	dst := netip.AddrPortFrom(vip, ProbePort)
	points := []string{x.HostLink("client"), x.Uplink(n.Name), x.Uplink(x.DSRNode())}
	var start, end time.Time
	caps, err := x.Capture(ctx, "etp-local-forced", capture.Filter{IPv6Only: true}, points, func() error {
		start = time.Now()
		_, err := x.ProbeUDP(ctx, client.Name, dst, "--count", "10", "--interval", "10ms", "--wait", "300ms")
		end = time.Now()
		return err
	}, silentOK(x.Uplink(x.DSRNode())))
	if err != nil {
		return err
	}
	r.pcaps(caps)
	in, _ := exchange(caps[x.Uplink(n.Name)].Packets, dst, start, end)
	_, answered := exchange(caps[x.HostLink("client")].Packets, dst, start, end)
	if in == 0 {
		return fmt.Errorf("etp-local: the requests steered toward %s never reached it: the steering did not take", n.Name)
	}
	forwarded := 0
	for _, p := range caps[x.Uplink(x.DSRNode())].Packets {
		if s := p.Sent(); s.IPv6 && s.Probe != nil && !s.Probe.Reply && !p.Time.Before(start) && !p.Time.After(end) {
			forwarded++
		}
	}
	if answered > 0 || forwarded > 0 {
		r.fail(kindForwarded, "requests forced through %s, which has no backend: %d answered, %d reached the backend's node", n.Name, answered, forwarded)
	}
	r.figure("forced_requests", float64(in))
	r.figure("forced_answered", float64(answered))
	return undo()
}

// viaOn reads `ip -6 route show PREFIX` and returns the next hop it names on dev ("":
// none), for single and multipath routes alike.
func viaOn(out, dev string) string {
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] != "via" {
			continue
		}
		for j := i + 2; j+1 < len(f) && f[j] != "via"; j++ {
			if f[j] == "dev" && f[j+1] == dev {
				return f[i+1]
			}
		}
	}
	return ""
}
