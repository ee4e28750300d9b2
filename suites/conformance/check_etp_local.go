package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"v6lab.dev/v6lab/reports"
)

// A Service with externalTrafficPolicy Local whose only backend runs on one node is
// announced from that node alone: every router's route to its VIP goes only through
// that node (or, away from its leaf, toward it), and the client reaches it. Control:
// the same backend behind an externalTrafficPolicy Cluster Service, announced by every
// node.
func etpLocal() Check {
	return Check{
		Name:    "etp-local",
		Applies: always,
		Variant: "the same backend behind a Service with externalTrafficPolicy Cluster (every node announces it)",
		Expect:  kindRouteViaNonBackend,
		Run: func(ctx context.Context, x *Lab, control bool) (Result, error) {
			svc := LocalSvc
			if control {
				svc = DSRSvc
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
			client := x.Plan.HostByRole("client")
			s, err := x.ProbeUDP(ctx, client.Name, netip.AddrPortFrom(vip, ProbePort), "--count", "10", "--interval", "10ms", "--wait", "300ms")
			if err != nil {
				return r, err
			}
			if s.Received != s.Sent || s.Sent == 0 {
				r.fail(kindUnanswered, "%d of %d probes to %s answered", s.Received, s.Sent, vip)
			}
			for src := range s.Observed {
				if src != client.Address.String() {
					r.fail(kindSourceRewritten, "the backend saw %s, not the client (externalTrafficPolicy Local keeps the source)", src)
				}
			}
			r.figure("answered", float64(s.Received))
			return r, nil
		},
	}
}
