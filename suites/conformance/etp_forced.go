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
	"v6lab.dev/v6lab/labs/verdict"
)

// forcedThrough steers the client's requests to the VIP through a node without a
// backend (static routes on the client's router and on that node's router, above
// BGP's), checks from the captures that the node dropped them — none answered, none
// reached the backend's node — and removes the routes, on any exit.
func forcedThrough(ctx context.Context, x *Lab, vip, backend netip.Addr, r *Result) error {
	client := x.Plan.HostByRole("client")
	n := x.nonDSRNode()
	steer, err := steerVIP(ctx, x, vip, n)
	if err != nil {
		return err
	}
	undo, err := faults.Inject(ctx, steer)
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
	forwarded := countForwarded(caps[x.Uplink(x.DSRNode())].Packets, vip, backend, start, end)
	if answered > 0 || forwarded > 0 {
		r.fail(kindForwarded, "requests forced through %s, which has no backend: %d answered, %d reached the backend's node", n.Name, answered, forwarded)
	}
	r.figure("forced_requests", float64(in))
	r.figure("forced_answered", float64(answered))
	return undo()
}

// countForwarded counts the requests of the forced stream on the backend's node's
// uplink in its window: to the VIP, or translated to the backend (from the client, or
// from the node that forwarded them), on the probe port. Other probes cross that uplink
// meanwhile (the checks beside etp-local in its group, Check.Concurrent: one run
// counted 5 of them, to other pods of that node, as forwarded requests).
func countForwarded(pkts []verdict.Packet, vip, backend netip.Addr, start, end time.Time) int {
	toVIP, _ := exchange(pkts, netip.AddrPortFrom(vip, ProbePort), start, end)
	toBackend, _ := exchange(pkts, netip.AddrPortFrom(backend, ProbePort), start, end)
	return toVIP + toBackend
}

// steerVIP is the static routes that make the client's traffic to vip enter the
// cluster through node n: on n's router toward n and, when the client's router is
// another one, on that router toward n's (faults.Route: above BGP's routes; the undo
// removes them).
func steerVIP(ctx context.Context, x *Lab, vip netip.Addr, n plan.KubeNode) (faults.Fault, error) {
	client := x.Plan.HostByRole("client")
	type steer struct{ router, via, dev string }
	steers := []steer{{n.Router, n.Address.String(), n.RouterIface}}
	if client.Router != n.Router {
		edge, iface := edgeUplink(x, x.node(n.Name))
		if edge != client.Router {
			return faults.Fault{}, fmt.Errorf("cannot steer %s from %s to %s (no direct link)", vip, client.Router, n.Router)
		}
		// The next hop toward the node's router: the one the edge routes the node's
		// own link through.
		out, err := x.Exec(ctx, edge, "ip", "-6", "route", "show", n.Link.String())
		if err != nil {
			return faults.Fault{}, err
		}
		via := viaOn(out, iface)
		if via == "" {
			return faults.Fault{}, fmt.Errorf("%s has no route toward %s: %q", edge, n.Link, out)
		}
		steers = append(steers, steer{edge, via, iface})
	}
	var routes []faults.Fault
	for _, s := range steers {
		routes = append(routes, x.Faults().Route(s.router, netip.PrefixFrom(vip, 128), s.via, s.dev))
	}
	return faults.All("steer "+vip.String()+" through "+n.Name, routes...), nil
}

// nonDSRNode is the first node without the DSR backend: where a check steers the
// VIP's traffic to make it cross the fabric to the backend's node.
func (x *Lab) nonDSRNode() plan.KubeNode {
	for _, k := range x.Plan.KubeNodes {
		if k.Name != x.DSRNode() {
			return k
		}
	}
	return plan.KubeNode{}
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
