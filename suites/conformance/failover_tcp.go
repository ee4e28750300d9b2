package conformance

import (
	"fmt"
	"time"

	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/reports"
)

// Failure kinds of the TCP connections beside the failover stream: a connection that
// crossed the failed node, whose backend is on another node, was reset or never carried
// data again, although the load balancer promises (Maglev, DSR) that it survives: the
// node the routers move it to picks the same backend, which holds the connection.
const (
	kindTCPReset = "tcp-reset"
	kindTCPLost  = "tcp-lost"
)

// tcpPromised says whether this lab promises that an established connection survives
// a change of entry node: with Maglev every node picks the same backend, and with DSR
// that backend answers the client itself, so no node but the backend's holds state.
func tcpPromised(x *Lab) bool {
	lb := x.Lab.Spec.Spec.LoadBalancer
	return lb.Algorithm == "maglev" && lb.Mode == spec.LBModeDSR
}

// judgeTCP judges the long-lived TCP connections of a failover run from the captures:
// which of them crossed the failed node up to the fault (its uplink shows their
// requests toward the VIP in the second before), which node answered them (with DSR
// the backend's: its uplink shows the replies from the VIP; with SNAT the entry
// node's), and for each whether it survived — no reset, and data from the server after
// the failure was undone — and its longest stall. Connections whose backend is on the
// failed node itself are reported apart: they wait for the node to come back.
func judgeTCP(x *Lab, f failure, run failoverRun, r *Result) error {
	client := x.Plan.HostByRole("client").Address
	streams, err := verdict.TCPStreams(verdict.Slice(run.caps[x.HostLink("client")].Packets), verdict.Match{Port: TCPPort}, client)
	if err != nil {
		return err
	}
	before := func(p *verdict.Packet) bool {
		return !p.Time.Before(run.faultAt.Add(-time.Second)) && !p.Time.After(run.faultAt)
	}
	crossing := map[uint16]bool{} // by the client's port
	answeredBy := map[uint16]string{}
	for _, n := range x.Plan.KubeNodes {
		up := run.caps[x.Uplink(n.Name)].Packets
		for i := range up {
			p := &up[i]
			switch {
			case !p.IPv6 || !before(p):
			case n.Name == run.entry && p.Src == client && p.Dst == run.tcpVIP && p.DstPort == TCPPort:
				crossing[p.SrcPort] = true
			case p.Src == run.tcpVIP && p.Dst == client && p.SrcPort == TCPPort && p.Payload > 0:
				answeredBy[p.DstPort] = n.Name
			}
		}
	}
	dsr := x.Lab.Spec.Spec.LoadBalancer.Mode == spec.LBModeDSR
	var conns, through, survived, onNode, onNodeSurvived, reset int
	stall, onNodeStall := 0.0, 0.0
	for _, s := range streams {
		if !s.Handshake || s.Server.Addr() != run.tcpVIP {
			continue // opened before the capture, or not one of ours
		}
		conns++
		ok := s.Survived(run.restoredAt)
		if s.StaleResets > 0 {
			r.Evidence = append(r.Evidence, reports.Evidence{Time: s.First, Src: "client",
				Note: fmt.Sprintf("tcp %s: the server answered the SYN with an earlier connection's ACK; the client reset that and opened the connection (not a reset of it)", s.Client)})
		}
		if s.Resets > 0 {
			reset++
			r.Timeline = append(r.Timeline, reports.Event{At: s.ResetAt, Label: fmt.Sprintf("tcp %s reset by the %s", s.Client, s.ResetBy)})
		}
		port := s.Client.Port()
		if !crossing[port] {
			continue
		}
		// With DSR the node that answers is the backend's; with SNAT every reply
		// returns through the entry node, which then tells nothing of the backend.
		if dsr && answeredBy[port] == run.entry {
			onNode++
			if ok {
				onNodeSurvived++
			}
			onNodeStall = max(onNodeStall, s.LongestStallMs)
			continue
		}
		through++
		if ok {
			survived++
		}
		stall = max(stall, s.LongestStallMs)
		switch {
		case ok || !tcpPromised(x):
		case s.Resets > 0:
			r.fail(kindTCPReset, "%s of %s: the connection %s -> %s (answered by %s) was reset by the %s at %s",
				f.name, run.entry, s.Client, s.Server, answeredBy[port], s.ResetBy, s.ResetAt.Format("15:04:05.000"))
		default:
			r.fail(kindTCPLost, "%s of %s: the connection %s -> %s (answered by %s) carried no data after the failure was undone (stalled %.0f ms from %s, %d retransmissions)",
				f.name, run.entry, s.Client, s.Server, answeredBy[port], s.LongestStallMs, s.StallStart.Format("15:04:05.000"), s.Retransmits)
		}
	}
	r.figure("tcp_conns_"+f.name, float64(conns))
	r.figure("tcp_through_"+f.name, float64(through))
	r.figure("tcp_survived_"+f.name, float64(survived))
	r.figure("tcp_stall_ms_"+f.name, stall)
	if dsr {
		r.figure("tcp_backend_on_node_"+f.name, float64(onNode))
		r.figure("tcp_backend_on_node_survived_"+f.name, float64(onNodeSurvived))
		r.figure("tcp_backend_on_node_stall_ms_"+f.name, onNodeStall)
	}
	r.figure("tcp_reset_"+f.name, float64(reset))
	// How far one stall spreads by itself: a connection held up by an outage of D
	// retransmits with its timer doubling from 200 ms, so the data flows again between
	// 0 and about 2D + 200 ms after the loss began: a retransmission carries a new
	// flow label, which may take another ECMP path at once (measured, node-stopped with
	// a UDP outage of 8-9 s: stalls of 0.7, 3.2 and 13.4 s; link-down 100-200 ms). The stall of a connection whose backend is on the
	// failed node lasts from 0 (no such connection in the run) to the whole stream.
	outage := time.Duration(r.Figures["outage_ms_"+f.name]) * time.Millisecond
	r.figure(reports.SpreadOf("tcp_stall_ms_"+f.name), float64((2*outage + 200*time.Millisecond).Milliseconds()))
	r.config(reports.SpreadOf("tcp_backend_on_node_stall_ms_"+f.name), float64(run.total.Milliseconds()+5000))
	note := fmt.Sprintf("%s on %s: %d TCP connections to %s; %d crossed the node toward a backend elsewhere: %d survived (longest stall %.0f ms); %d had their backend on the node: %d survived (longest stall %.0f ms); %d reset",
		f.name, run.entry, conns, run.tcpVIP, through, survived, stall, onNode, onNodeSurvived, onNodeStall, reset)
	if !dsr {
		note = fmt.Sprintf("%s on %s: %d TCP connections to %s (SNAT: their replies return through the entry node); %d crossed the node: %d survived (longest stall %.0f ms); %d reset",
			f.name, run.entry, conns, run.tcpVIP, through, survived, stall, reset)
	}
	r.Evidence = append(r.Evidence, reports.Evidence{File: run.caps[x.HostLink("client")].File, Time: run.faultAt, Note: note})
	return nil
}
