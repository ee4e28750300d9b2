package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/hubble"
	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/reports"
)

// Connections to a VIP whose only backend runs on node B enter through every node the
// routers spread them to; with DSR the replies (source VIP) leave node B toward the
// client and never pass the node they entered through. Control: the same backend behind
// a Service in SNAT forwarding mode, where replies go back through the entry node. On a
// layer 2 segment the connections enter through the VIP's owner (its segment port):
// the check's own Services, each with a VIP another node than B owns.
func dsrReturnPath() Check {
	return Check{
		Name:       "dsr-return-path",
		Concurrent: withServices,
		Applies:    forwardsWithDSR,
		Variant:    "the same backend behind a Service in SNAT forwarding mode (service.cilium.io/forwarding-mode: snat): its replies go back through the entry node",
		Expect:     kindReplyOnEntryNode,
		Run: func(ctx context.Context, x *Lab, control bool) (Result, error) {
			r := Result{Pass: true, Reason: "ok"}
			ns := x.Plan.Apps[0].Namespace
			svc := DSRSvc
			if control {
				svc = SNATSvc
			}
			var vip netip.Addr
			var err error
			client := x.Plan.HostByRole("client")
			var points []string
			for _, n := range x.Plan.KubeNodes {
				points = append(points, x.Uplink(n.Name))
			}
			if x.Plan.Segment != nil {
				ann, offset := map[string]string(nil), 16
				if control {
					ann, offset = map[string]string{"service.cilium.io/forwarding-mode": "snat"}, 32
				}
				name := "l2-" + svc
				var owner string
				var remove func()
				vip, owner, remove, err = x.l2ServiceAwayFrom(ctx, ns, name, ann, offset)
				defer remove()
				if err != nil {
					return r, err
				}
				for _, p := range x.Plan.Segment.Ports {
					points = append(points, p.Node+":"+p.Iface)
				}
				r.Evidence = append(r.Evidence, reports.Evidence{Note: fmt.Sprintf("VIP %s (Service %s/%s) owned by %s; backend on %s", vip, ns, name, owner, x.DSRNode())})
			} else if vip, err = x.VIP(ctx, ns, svc); err != nil {
				return r, err
			}
			var hs HTTPSummary
			var start, end time.Time
			// A node the routers sent no connection through may see nothing; the
			// backend's node must see the replies. (On a segment the SNAT Service's
			// connections all enter through the VIP's owner, another node, and go
			// back out there: the backend's uplink carries only the forwarded
			// connections, to the pod's port, which the filter leaves out.)
			var others []string
			for _, pt := range points {
				if pt != x.Uplink(x.DSRNode()) || (control && x.Plan.Segment != nil) {
					others = append(others, pt)
				}
			}
			caps, err := x.Capture(ctx, "dsr"+suffix(control), capture.Filter{Proto: "tcp", Port: HTTPPort}, points, func() error {
				var err error
				start = time.Now()
				hs, err = x.ProbeHTTP(ctx, client.Name, vip, 40)
				end = time.Now()
				return err
			}, silentOK(others...))
			if err != nil {
				return r, err
			}
			r.pcaps(caps)
			files := map[string][]verdict.Packet{}
			for _, c := range caps {
				files[c.File] = c.Packets
			}
			expect := caps[x.Uplink(x.DSRNode())].File
			v := verdict.ReturnPath(files, vip, client.Address, verdict.Match{Proto: "tcp"}, expect)
			if hs.OK != hs.Requests {
				r.fail(kindUnanswered, "%d of %d connections answered", hs.OK, hs.Requests)
			}
			if !v.Pass {
				r.fail(returnPathKind(v), "%s", v.Reason)
			}
			r.Evidence = append(r.Evidence, Evidence("", v.Evidence)...)
			for f, n := range v.Entries {
				r.figure("entered_"+strings.TrimSuffix(lastElem(f), ".pcapng"), float64(n))
			}
			for f, n := range v.Replies {
				r.figure("replies_"+strings.TrimSuffix(lastElem(f), ".pcapng"), float64(n))
			}
			if control {
				// The SNAT Service's backend sees the entry node, not the client:
				// Hubble's record is only where the backend sees the client.
				return r, nil
			}
			// Hubble's account of the connections beside the wire's: recorded, not judged.
			dsr, err := x.dsrBackend(ctx)
			if err != nil {
				return r, err
			}
			probe := returnPathProbe("the client → the DSR backend's VIP", v, client.Address, netip.AddrPortFrom(vip, HTTPPort), []Pod{dsr}, start, end)
			if _, _, err := x.recordHubble(ctx, &r, []hubble.Probe{probe}, nil); err != nil {
				return r, err
			}
			return r, nil
		},
	}
}

// returnPathProbe is the wire's account of the client's TCP connections to a VIP or
// a NodePort (to), for Hubble's (recordHubble), from the return-path analyzer's
// counts: sent, the client's segments toward it where they entered; delivered, the
// segments back from it to the client wherever they left. Hubble reports the exchange
// at the backends (at their HTTP port), past the translation.
func returnPathProbe(what string, v verdict.ReturnPathVerdict, client netip.Addr, to netip.AddrPort, backends []Pod, start, end time.Time) hubble.Probe {
	p := hubble.Probe{What: what + ", TCP", Src: client, Dst: to, Proto: "TCP", Start: start, End: end, Replies: true}
	for _, b := range backends {
		p.Backends = append(p.Backends, netip.AddrPortFrom(b.IP, podHTTP))
	}
	for _, n := range v.Entries {
		p.Sent += n
	}
	for _, n := range v.Replies {
		p.Delivered += n
	}
	return p
}

// forwardsWithDSR says why the lab's load balancer does not forward with DSR.
func forwardsWithDSR(x *Lab) string {
	s := x.Lab.Spec.Spec
	if s.Datapath != spec.DatapathNative {
		return "DSR applies to native routing only (tunnel mode uses SNAT forwarding)"
	}
	if s.LoadBalancer.Mode != spec.LBModeDSR {
		return "the lab's load balancer mode is " + string(s.LoadBalancer.Mode) + ", not dsr"
	}
	return ""
}

func lastElem(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[i+1:]
	}
	return p
}
