package conformance

import (
	"context"
	"fmt"
	"net/netip"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/reports"
)

// The client opens connection after connection (a new source port each) to a
// LoadBalancer Service with sessionAffinity: ClientIP and a backend on every node:
// every one reaches the same backend. Judged on the backends' veths, where each
// backend's SYN-ACKs show who accepted the connection (the routers spread the
// connections over the entry nodes: the affinity must hold across them). Variant: the
// same backends behind the application's Service without affinity, where the
// connections spread over several backends.
func sessionAffinity() Check {
	return Check{
		Name:       "session-affinity",
		Concurrent: withServices,
		Applies:    always,
		Variant:    "the same backends behind the application's echo Service, which has no session affinity",
		Expect:     kindSeveralBackends,
		Run:        runSessionAffinity,
	}
}

// kindSeveralBackends: one client's connections reached more than one backend.
const kindSeveralBackends = "several-backends"

func runSessionAffinity(ctx context.Context, x *Lab, control bool) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	ns, svc := x.Plan.Apps[0].Namespace, Affinity
	if control {
		svc = EchoName
	}
	vip, pods, points, err := x.echoBehind(ctx, ns, svc, 3)
	if err != nil {
		return r, err
	}
	client := x.Plan.HostByRole("client")
	var hs HTTPSummary
	// A backend that is not picked sees nothing.
	caps, err := x.Capture(ctx, "affinity"+suffix(control), capture.Filter{Proto: "tcp", Port: podHTTP}, points, func() error {
		var err error
		hs, err = x.ProbeHTTP(ctx, client.Name, vip, 20)
		return err
	}, silentOK(points...))
	if err != nil {
		return r, err
	}
	r.pcaps(caps)
	judgeAffinity(pods, points, caps, hs, vip, x.Plan.Pods.Block, &r)
	return r, nil
}

// judgeAffinity counts, on each backend's veth (points[i] for pods[i]), the SYN-ACKs
// that show it accepted a connection from outside the cluster (not to an address of
// podBlock: other checks' pods reach the same backends meanwhile): one backend must
// have accepted them all.
func judgeAffinity(pods []Pod, points []string, caps map[string]Captured, hs HTTPSummary, vip netip.Addr, podBlock netip.Prefix, r *Result) {
	if hs.OK != hs.Requests || hs.Requests == 0 {
		r.fail(kindUnanswered, "%d of %d connections to %s answered", hs.OK, hs.Requests, vip)
	}
	accepted, reached := 0, 0
	for i, p := range pods {
		c := caps[points[i]]
		n := 0
		for j := range c.Packets {
			q := c.Packets[j].Sent()
			if q.Src == p.IP && q.SrcPort == podHTTP && !podBlock.Contains(q.Dst) && q.TCPFlags&verdict.TCPSyn != 0 && q.TCPFlags&verdict.TCPAck != 0 {
				n++
				if n == 1 {
					r.Evidence = append(r.Evidence, reports.Evidence{File: c.File, Frame: c.Packets[j].Index, Time: c.Packets[j].Time, Src: q.Src.String(), Dst: q.Dst.String(),
						Note: "first SYN-ACK of backend " + p.Name + " on " + p.Node})
				}
			}
		}
		if n > 0 {
			reached++
		}
		accepted += n
		r.figure("connections_"+p.Node, float64(n))
	}
	switch {
	case accepted < hs.Requests:
		r.fail(kindNothingSeen, "%d connections, %d SYN-ACKs on the backends' veths", hs.Requests, accepted)
	case reached > 1:
		r.fail(kindSeveralBackends, "the client's %d connections to %s reached %d backends", hs.Requests, vip, reached)
	}
	r.figure("backends_reached", float64(reached))
}

// echoBehind is what a check of a Service in front of the application's echo pods
// starts from: the Service's VIP, the echo pods (one Ready on every node, and at least
// min of them) and their veths, in the pods' order.
func (x *Lab) echoBehind(ctx context.Context, ns, svc string, min int) (netip.Addr, []Pod, []string, error) {
	vip, err := x.VIP(ctx, ns, svc)
	if err != nil {
		return vip, nil, nil, err
	}
	pods, err := x.Pods(ctx, ns, EchoName)
	if err != nil {
		return vip, nil, nil, err
	}
	if want := len(x.Plan.KubeNodes); len(pods) != want || want < min {
		return vip, nil, nil, fmt.Errorf("%d of %d echo backends Ready (the check needs %d or more)", len(pods), want, min)
	}
	ifaces, err := x.PodIfaces(ctx)
	if err != nil {
		return vip, nil, nil, err
	}
	veths, err := podVeths(ifaces, pods)
	return vip, pods, veths, err
}
