package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/hubble"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/reports"
)

// The client reaches the DSR backend's Service on its NodePort at every node's own
// address (node-ip), each request on a new connection. Through a node that is not the
// backend's, the replies (from the entered node's address and the NodePort) leave the
// backend's node toward the client and never pass the node entered: DSR for NodePorts,
// judged on the nodes' uplinks by the return-path analyzer. Variant: the same backend's
// SNAT Service on its NodePort, whose replies go back through the node entered.
func nodePort() Check {
	return Check{
		Name:       "nodeport",
		Concurrent: withPolicies,
		Applies:    forwardsWithDSR,
		Variant:    "the same backend's Service in SNAT forwarding mode, on its own NodePort: its replies go back through the node entered",
		Expect:     kindReplyOnEntryNode,
		Run:        runNodePort,
	}
}

func runNodePort(ctx context.Context, x *Lab, control bool) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	ns, name := x.Plan.Apps[0].Namespace, DSRSvc
	if control {
		name = SNATSvc
	}
	s, err := x.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return r, err
	}
	var port uint16
	for _, p := range s.Spec.Ports {
		if p.Name == "http" {
			port = uint16(p.NodePort)
		}
	}
	if port == 0 {
		return r, fmt.Errorf("service %s/%s has no NodePort for http", ns, name)
	}
	client := x.Plan.HostByRole("client")
	backend := x.Uplink(x.DSRNode())
	var points []string
	for _, n := range x.Plan.KubeNodes {
		points = append(points, x.Uplink(n.Name))
	}
	const conns = 10
	summaries := map[string]HTTPSummary{}
	windows := map[string][2]time.Time{}
	caps, err := x.Capture(ctx, "nodeport"+suffix(control), capture.Filter{Proto: "tcp"}, points, func() error {
		for _, n := range x.Plan.KubeNodes {
			start := time.Now()
			hs, err := x.ProbeHTTPTo(ctx, client.Name, netip.AddrPortFrom(n.Address, port), conns, 2*time.Second)
			if err != nil {
				return fmt.Errorf("%s: %w", n.Name, err)
			}
			summaries[n.Name] = hs
			windows[n.Name] = [2]time.Time{start, time.Now()}
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	r.pcaps(caps)
	// Hubble's account of each node's connections beside the wire's: recorded, not
	// judged, and only where the backend sees the client (the DSR Service: the SNAT
	// one's backend sees the entry node, and Hubble reports the exchange under its
	// address, as vip-reachability's record).
	var dsr Pod
	if !control {
		if dsr, err = x.dsrBackend(ctx); err != nil {
			return r, err
		}
	}
	var wire []hubble.Probe
	for _, n := range x.Plan.KubeNodes {
		to := netip.AddrPortFrom(n.Address, port)
		if hs := summaries[n.Name]; hs.OK != hs.Requests || hs.Requests == 0 {
			r.fail(kindUnanswered, "%s: %d of %d connections to %s answered", n.Name, hs.OK, hs.Requests, to)
		}
		entry := x.Uplink(n.Name)
		var v verdict.ReturnPathVerdict
		if entry == backend {
			// Entered where the backend runs: the replies leave here, nothing to prove
			// about the path but that they are on the wire.
			v = verdict.ReturnPath(map[string][]verdict.Packet{caps[entry].File: caps[entry].Packets}, n.Address, client.Address, verdict.Match{Proto: "tcp"}, "")
			if !v.Pass {
				r.fail(kindUnanswered, "%s (the backend's node): %s", n.Name, v.Reason)
			}
			r.figure("replies_"+n.Name, float64(v.Replies[caps[entry].File]))
		} else {
			files := map[string][]verdict.Packet{caps[entry].File: caps[entry].Packets, caps[backend].File: caps[backend].Packets}
			v = verdict.ReturnPath(files, n.Address, client.Address, verdict.Match{Proto: "tcp"}, caps[backend].File)
			if !v.Pass {
				r.fail(returnPathKind(v), "through %s: %s", n.Name, v.Reason)
			}
			r.Evidence = append(r.Evidence, reports.Evidence{Note: fmt.Sprintf("through %s (%s): %d requests entered there; replies from it: %d on its uplink, %d on the backend node %s's",
				n.Name, to, v.Entries[caps[entry].File], v.Replies[caps[entry].File], v.Replies[caps[backend].File], x.DSRNode())})
			r.Evidence = append(r.Evidence, Evidence("", v.Evidence)...)
			r.figure("replies_via_backend_node_"+n.Name, float64(v.Replies[caps[backend].File]))
			r.figure("replies_via_entry_node_"+n.Name, float64(v.Replies[caps[entry].File]))
		}
		if !control {
			w := windows[n.Name]
			wire = append(wire, returnPathProbe("the client → "+n.Name+"'s NodePort", v, client.Address, to, []Pod{dsr}, w[0], w[1]))
		}
	}
	if _, _, err := x.recordHubble(ctx, &r, wire, nil); err != nil {
		return r, err
	}
	return r, nil
}
