package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gopacket/gopacket/layers"
	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/faults"
	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/reports"
)

// Full-size packets to the DSR Service's VIP, steered through a node without its
// backend: in a DSR lab the entry node adds its destination option (24 bytes) to
// each request it forwards, in a tunnel lab VXLAN adds 70. UDP probes of growing
// payloads up to the client link's MTU, each size twice, and a TCP connection whose
// writes fill whole segments both ways. Each size must be answered, or a Packet Too
// Big for the VIP must come back to the client and the client must honour it (its
// later packets fit the MTU it names) and then be answered; a size lost without a
// Packet Too Big is a black hole and fails. Judged on the client's link. Reported: the
// largest payload answered, the MTU the Packet Too Big named. Control: the client's
// router drops every packet to the VIP over 1280 bytes and says nothing (a middlebox
// that filters ICMPv6). Not 1500: Cilium 1.18.4 answers full-size requests with a
// Packet Too Big naming 1476 (from the backend pod's address), the client keeps that
// path MTU for the VIP, and its fragments then fit under a 1500-byte filter (a CI run's
// control passed so).
func pmtu() Check {
	return Check{
		Name:         "pmtu",
		ControlGroup: disjointBreaks,
		Concurrent:   withPolicies,
		Applies:      routedVIPs,
		Breakage:     "the client's router drops, silently (no Packet Too Big), every packet to the VIP longer than 1280 bytes (IPv6's minimum MTU: below any path MTU the client may have cached from an earlier Packet Too Big)",
		Expect:       kindBlackHole,
		// A full-size request the DSR option makes too big: Cilium drops it and sends the
		// Packet Too Big the check waits for. The control's black hole eats the first
		// fragments of the client's fragmented requests: the rest arrive alone.
		PassDrops:    []string{reasonFragNeeded},
		ControlDrops: []string{reasonFragNeeded, reasonFirstFragment, reasonFirstFragmentWorld},
		Break: func(ctx context.Context, x *Lab) (func(context.Context) error, error) {
			vip, err := x.VIP(ctx, x.Plan.Apps[0].Namespace, DSRSvc)
			if err != nil {
				return nil, err
			}
			undo, err := faults.Inject(ctx, x.Faults().PMTUBlackHole(x.Plan.HostByRole("client").Router, vip, 1280, "v6lab_negative"))
			return func(context.Context) error { return undo() }, err
		},
		Run: runPMTU,
	}
}

// Failure kinds of pmtu.
const (
	kindBlackHole      = "black-hole"      // packets of a size lost, and no Packet Too Big came back
	kindTooBigIgnored  = "too-big-ignored" // the sender went on sending packets larger than a Packet Too Big's MTU
	kindTooBigThenLost = "too-big-lost"    // the sender honoured a Packet Too Big, and the smaller packets were lost
)

// pmtuRound is one send of one payload size: its window.
type pmtuRound struct {
	size       int
	start, end time.Time
}

func runPMTU(ctx context.Context, x *Lab, control bool) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	vip, err := x.VIP(ctx, x.Plan.Apps[0].Namespace, DSRSvc)
	if err != nil {
		return r, err
	}
	client := x.Plan.HostByRole("client")
	out, err := x.Exec(ctx, client.Name, "cat", "/sys/class/net/"+client.Iface+"/mtu")
	if err != nil {
		return r, err
	}
	mtu, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || mtu < 1280 {
		return r, fmt.Errorf("the client's %s has no usable MTU: %q", client.Iface, out)
	}
	entry := x.nonDSRNode()
	steer, err := steerVIP(ctx, x, vip, entry)
	if err != nil {
		return r, err
	}
	undo, err := faults.Inject(ctx, steer)
	defer func() { _ = undo() }()
	if err != nil {
		return r, err
	}
	sizes := pmtuSizes(mtu)
	var rounds []pmtuRound
	var tcpStart, tcpEnd time.Time
	clientPt := x.HostLink("client")
	points := []string{clientPt, x.Uplink(entry.Name), x.Uplink(x.DSRNode())}
	caps, err := x.Capture(ctx, "pmtu"+suffix(control), capture.Filter{IPv6Only: true}, points, func() error {
		for _, size := range sizes {
			for range 2 {
				rd := pmtuRound{size: size, start: time.Now()}
				if _, err := x.ProbeUDP(ctx, client.Name, netip.AddrPortFrom(vip, ProbePort), "--count", "3", "--interval", "20ms", "--wait", "300ms", "--size", fmt.Sprint(size)); err != nil {
					return err
				}
				rd.end = time.Now()
				rounds = append(rounds, rd)
			}
		}
		tcpStart = time.Now()
		// Writes of 64 KiB: every segment as large as the MSS allows, both ways. A
		// connection that stalls fails in the probe (a second past the writes: a
		// black hole stalls it for good), and the wire judges it.
		_, _ = x.ProbeTCP(ctx, client.Name, netip.AddrPortFrom(vip, TCPPort), "--conns", "1", "--size", "65536", "--interval", "100ms", "--duration", "1s", "--grace", "1s")
		tcpEnd = time.Now()
		return nil
	}, silentOK(x.Uplink(entry.Name), x.Uplink(x.DSRNode())))
	if err != nil {
		return r, err
	}
	r.pcaps(caps)
	if err := undo(); err != nil {
		return r, err
	}
	r.Evidence = append(r.Evidence, reports.Evidence{Note: fmt.Sprintf("client link MTU %d; VIP %s steered through %s, backend on %s (%s)", mtu, vip, entry.Name, x.DSRNode(), pmtuPath(x))})
	judgePMTU(caps[clientPt], rounds, client.Address, vip, &r)
	if err := judgePMTUTCP(caps[clientPt], tcpStart, tcpEnd, client.Address, vip, &r); err != nil {
		return r, err
	}
	return r, nil
}

// pmtuPath says what the path adds to a request on its way to a remote backend.
func pmtuPath(x *Lab) string {
	if x.Lab.Spec.Spec.Datapath == spec.DatapathTunnel {
		return "the entry node forwards it inside VXLAN: 70 bytes more"
	}
	if x.Lab.Spec.Spec.LoadBalancer.Mode == spec.LBModeDSR {
		return "the entry node adds its DSR destination option: 24 bytes more"
	}
	return "the entry node forwards it as it came"
}

// pmtuSizes are the UDP payloads probed: the IPv6 minimum MTU's, Ethernet's, a jumbo
// frame's, and the client link's full size with and without room for what the path
// adds, none larger than the link carries.
func pmtuSizes(mtu int) []int {
	full := mtu - 40 - 8
	var sizes []int
	for _, s := range []int{1280 - 48, 1500 - 48, 9000 - 48, full - 72, full} {
		if s > 0 && s <= full && !slices.Contains(sizes, s) {
			sizes = append(sizes, s)
		}
	}
	slices.Sort(sizes)
	return sizes
}

// judgePMTU judges each UDP payload size on the client's link: answered in either
// round; else a Packet Too Big for the VIP must have come back, the client's later
// requests must fit its MTU, and they must be answered.
func judgePMTU(c Captured, rounds []pmtuRound, client, vip netip.Addr, r *Result) {
	largest := 0
	var tooBig *verdict.Packet
	for i := 0; i+1 < len(rounds); i += 2 {
		size, from, to := rounds[i].size, rounds[i].start, rounds[i+1].end
		answered, requests, overMTU := 0, 0, 0
		var ptb *verdict.Packet
		for j := range c.Packets {
			p := &c.Packets[j]
			if !p.IPv6 || p.Time.Before(from) || p.Time.After(to) {
				continue
			}
			switch {
			case p.Proto == layers.IPProtocolICMPv6 && p.TooBig.MTU > 0 && p.Dst == client && p.TooBig.Dst == vip:
				if ptb == nil {
					ptb = p
				}
			case p.Proto == layers.IPProtocolUDP && p.Src == client && p.Dst == vip && p.DstPort == ProbePort:
				requests++
				if ptb != nil && p.IPLength > int(ptb.TooBig.MTU) {
					overMTU++
				}
			case p.Proto == layers.IPProtocolUDP && p.Src == vip && p.Dst == client && p.Probe != nil && p.Probe.Reply:
				answered++
			}
		}
		if ptb != nil && tooBig == nil {
			tooBig = ptb
			r.figure("too_big_mtu", float64(ptb.TooBig.MTU))
			r.Evidence = append(r.Evidence, reports.Evidence{File: c.File, Frame: ptb.Index, Time: ptb.Time, Src: ptb.Src.String(), Dst: ptb.Dst.String(),
				Note: fmt.Sprintf("Packet Too Big for %s from %s: MTU %d (after %d-byte UDP payloads)", vip, ptb.Src, ptb.TooBig.MTU, size)})
		}
		note := fmt.Sprintf("UDP payload %d bytes (IPv6 packet %d): %d requests, %d answered", size, size+48, requests, answered)
		switch {
		case requests == 0:
			r.fail(kindNothingSeen, "no %d-byte request to %s on the client's link", size, vip)
		case ptb != nil && overMTU > 0 && answered == 0:
			r.fail(kindTooBigIgnored, "%d-byte payloads: the client sent %d packets over the MTU %d a Packet Too Big named", size, overMTU, ptb.TooBig.MTU)
		case answered > 0:
			largest = max(largest, size)
		case ptb != nil:
			r.fail(kindTooBigThenLost, "%d-byte payloads: after a Packet Too Big (MTU %d) the client's smaller packets were not answered either", size, ptb.TooBig.MTU)
		default:
			r.fail(kindBlackHole, "%d-byte payloads to %s: %d requests, none answered, and no Packet Too Big came back", size, vip, requests)
		}
		if ptb != nil {
			note += fmt.Sprintf(", after a Packet Too Big (MTU %d)", ptb.TooBig.MTU)
		}
		r.Evidence = append(r.Evidence, reports.Evidence{File: c.File, Note: note})
	}
	r.figure("largest_udp_payload", float64(largest))
}

// judgePMTUTCP judges the connection of full-size writes on the client's link: it was
// echoed without a reset, and the largest segment each way is reported; a Packet Too
// Big for the VIP must be honoured (no later segment of the client over its MTU).
func judgePMTUTCP(c Captured, from, to time.Time, client, vip netip.Addr, r *Result) error {
	var in []verdict.Packet
	for _, p := range c.Packets {
		if !p.Time.Before(from) && !p.Time.After(to.Add(time.Second)) {
			in = append(in, p)
		}
	}
	streams, err := verdict.TCPStreams(verdict.Slice(in), verdict.Match{Port: TCPPort}, client)
	if err != nil {
		return err
	}
	conns, ok := 0, 0
	for _, s := range streams {
		if !s.Handshake || s.Server.Addr() != vip {
			continue
		}
		conns++
		if s.Resets == 0 && s.ServerData > 0 {
			ok++
		}
	}
	toVIP, fromVIP, over := 0, 0, 0
	var ptbMTU uint32
	for i := range in {
		p := &in[i]
		switch {
		case p.Proto == layers.IPProtocolICMPv6 && p.TooBig.MTU > 0 && p.Dst == client && p.TooBig.Dst == vip:
			if ptbMTU == 0 || p.TooBig.MTU < ptbMTU {
				ptbMTU = p.TooBig.MTU
			}
		case p.Proto == layers.IPProtocolTCP && p.Src == client && p.Dst == vip:
			toVIP = max(toVIP, p.IPLength)
			if ptbMTU > 0 && p.IPLength > int(ptbMTU) {
				over++
			}
		case p.Proto == layers.IPProtocolTCP && p.Src == vip && p.Dst == client:
			fromVIP = max(fromVIP, p.IPLength)
		}
	}
	switch {
	case conns == 0:
		r.fail(kindNothingSeen, "no TCP connection to %s was seen opening on the client's link", vip)
	case ok < conns && ptbMTU == 0:
		r.fail(kindBlackHole, "a TCP connection of full-size segments to %s was reset or never echoed, and no Packet Too Big came back", vip)
	case over > 1: // one segment may already be in flight
		r.fail(kindTooBigIgnored, "the client sent %d TCP segments over the MTU %d a Packet Too Big named", over, ptbMTU)
	case ok < conns:
		r.fail(kindTooBigThenLost, "a TCP connection of full-size segments to %s was reset or never echoed after a Packet Too Big (MTU %d)", vip, ptbMTU)
	}
	r.figure("largest_tcp_packet_to_vip", float64(toVIP))
	r.figure("largest_tcp_packet_from_vip", float64(fromVIP))
	r.Evidence = append(r.Evidence, reports.Evidence{File: c.File, Note: fmt.Sprintf("TCP, 64 KiB writes: %d of %d connections echoed; largest IPv6 packet to the VIP %d bytes, from it %d", ok, conns, toVIP, fromVIP)})
	return nil
}
