package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket/layers"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/hubble"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/reports"
)

// Every application's echo Service is reached by its ClusterIP from a pod of another
// application, over TCP (a new connection per request) and UDP; the Service's backends
// run on the sender's node and on the others. The wire shows every backend answering the sender
// (a remote one on its node's uplink, a local one on its own veth: a veth shows what
// its pod sends), and no address of the ClusterIP range on any node's uplink: Cilium
// translates the ClusterIP to a backend before a packet leaves the node (at the socket
// or at the pod's interface). Variant: the same probes to an address of the range that
// no Service holds: nothing translates it, and it leaves the node as it was sent.
func clusterIP() Check {
	return Check{
		Name:       "clusterip",
		Concurrent: withServices,
		Applies:    always,
		Variant:    "the probes go to an address of the ClusterIP range that no Service holds: nothing translates it",
		Expect:     kindClusterIPOnWire,
		Run:        runClusterIP,
	}
}

// kindClusterIPOnWire: an address of the ClusterIP range was seen on a node's uplink.
const kindClusterIPOnWire = "clusterip-on-wire"

func runClusterIP(ctx context.Context, x *Lab, control bool) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	ifaces, err := x.PodIfaces(ctx)
	if err != nil {
		return r, err
	}
	var uplinks []string
	for _, n := range x.Plan.KubeNodes {
		uplinks = append(uplinks, x.Uplink(n.Name))
	}
	if len(x.Plan.Apps) < 2 {
		return r, fmt.Errorf("clusterip needs two applications (one sends, the other's Service answers)")
	}
	var wire []hubble.Probe
	for i, app := range x.Plan.Apps {
		// The sender is a pod of another application: never a backend itself (a pod
		// reaching itself through its Service never leaves its own namespace).
		senders, err := x.Pods(ctx, x.Plan.Apps[(i+1)%len(x.Plan.Apps)].Namespace, EchoName)
		if err != nil || len(senders) == 0 {
			return r, fmt.Errorf("%s: no pod of another application to send from (%v)", app.Name, err)
		}
		pods, err := x.Pods(ctx, app.Namespace, EchoName)
		if err != nil {
			return r, err
		}
		if want := len(x.Plan.KubeNodes); len(pods) != want {
			return r, fmt.Errorf("%s: %d of the %d echo backends are Ready", app.Name, len(pods), want)
		}
		s, err := x.Client.CoreV1().Services(app.Namespace).Get(ctx, EchoName, metav1.GetOptions{})
		if err != nil {
			return r, err
		}
		cip, err := netip.ParseAddr(s.Spec.ClusterIP)
		if err != nil {
			return r, fmt.Errorf("%s: service %s has no ClusterIP (%q)", app.Name, EchoName, s.Spec.ClusterIP)
		}
		if control {
			if cip, err = x.unheldClusterIP(ctx); err != nil {
				return r, err
			}
		}
		from := senders[0]
		// The sender's veth shows what it sends (Hubble's account is set against it).
		sender, err := podVeth(ifaces, from)
		if err != nil {
			return r, err
		}
		points := append([]string{sender}, uplinks...)
		for _, p := range pods {
			if p.Node == from.Node {
				pt, err := podVeth(ifaces, p)
				if err != nil {
					return r, err
				}
				points = append(points, pt)
			}
		}
		conns, udp := 10*len(pods), 20
		if control { // unanswered: a few show it
			conns, udp = 1, 5
		}
		var hs HTTPSummary
		var ps ProbeSummary
		var udpStart, udpEnd time.Time
		// Only what crosses a node's uplink (a remote backend) shows there; the check
		// judges what must be seen, so no point is required to see something.
		caps, err := x.Capture(ctx, "clusterip-"+app.Name+suffix(control), capture.Filter{IPv6Only: true}, points, func() error {
			var err error
			if hs, err = x.PodProbeHTTP(ctx, from, netip.AddrPortFrom(cip, HTTPPort), conns, time.Second); err != nil {
				return err
			}
			udpStart = time.Now()
			ps, err = x.PodProbeUDP(ctx, from, netip.AddrPortFrom(cip, ProbePort), "--count", fmt.Sprint(udp), "--interval", "10ms", "--wait", "500ms")
			udpEnd = time.Now()
			return err
		}, silentOK(points...))
		if err != nil {
			return r, err
		}
		r.pcaps(caps)
		replies := judgeClusterIP(x, app.Name, from, pods, cip, uplinks, ifaces, caps, hs, ps, &r)
		wire = append(wire, clusterIPProbe(app.Name, from, pods, cip, ifaces, caps, replies, udpStart, udpEnd))
	}
	// Hubble's account of the UDP probes beside the wire's: recorded, not judged.
	if _, _, err := x.recordHubble(ctx, &r, wire, nil); err != nil {
		return r, err
	}
	return r, nil
}

// clusterIPProbe is the wire's account of one sender's UDP probes to a ClusterIP, for
// Hubble's (recordHubble): sent, the requests on the sender's veth (socket LB has
// translated them to a backend already; the control's unheld address is not
// translated); delivered, the backends' replies judgeClusterIP counted where they
// show. Hubble reports the flows past the translation, to the backends.
func clusterIPProbe(app string, from Pod, pods []Pod, cip netip.Addr, ifaces map[netip.Addr]string,
	caps map[string]Captured, delivered int, start, end time.Time) hubble.Probe {
	p := hubble.Probe{What: app + ": pod " + from.Name + " → ClusterIP, UDP", Src: from.IP, Dst: netip.AddrPortFrom(cip, ProbePort),
		Proto: "UDP", Start: start, End: end, Replies: true, Delivered: delivered}
	p.Sent = countSent(caps[ifaces[from.IP]].Packets, verdict.Match{Proto: "udp", Src: from.IP, DstPort: ProbePort})
	for _, b := range pods {
		p.Backends = append(p.Backends, netip.AddrPortFrom(b.IP, ProbePort))
	}
	return p
}

// countSent counts the packets m matches as their sender sent them (inside VXLAN in
// tunnel mode).
func countSent(pkts []verdict.Packet, m verdict.Match) int {
	n := 0
	for i := range pkts {
		if m.Matches(pkts[i].Sent()) {
			n++
		}
	}
	return n
}

// judgeClusterIP judges one application's exchange: the range absent from the
// uplinks, every backend's answers where they must show, the probe's counts. It
// returns the backends' UDP replies it saw.
func judgeClusterIP(x *Lab, app string, from Pod, pods []Pod, cip netip.Addr, uplinks []string, ifaces map[netip.Addr]string,
	caps map[string]Captured, hs HTTPSummary, ps ProbeSummary, r *Result) int {
	rng := x.Plan.ServiceCIDR
	onWire := 0
	for _, pt := range uplinks {
		c := caps[pt]
		for i := range c.Packets {
			p := c.Packets[i].Sent()
			if !rng.Contains(p.Src) && !rng.Contains(p.Dst) {
				continue
			}
			onWire++
			if onWire <= 3 {
				r.Evidence = append(r.Evidence, reports.Evidence{File: c.File, Frame: c.Packets[i].Index, Time: c.Packets[i].Time,
					Src: p.Src.String(), Dst: p.Dst.String(), Note: "an address of the ClusterIP range " + rng.String() + " on " + pt})
			}
		}
	}
	if onWire > 0 {
		r.fail(kindClusterIPOnWire, "%s: %d packets to or from the ClusterIP range %s on the nodes' uplinks (probing %s)", app, onWire, rng, cip)
	}
	// Each backend's answers to the sender, where they show: a local backend's veth,
	// a remote one's node uplink (in tunnel mode inside VXLAN).
	tcpReplies, udpReplies := 0, 0
	for _, b := range pods {
		pt := x.Uplink(b.Node)
		if b.Node == from.Node {
			pt = ifaces[b.IP]
		}
		m := verdict.Match{Src: b.IP, Dst: from.IP}
		tcp, udp := 0, 0
		for i := range caps[pt].Packets {
			p := caps[pt].Packets[i].Sent()
			if !m.Matches(p) {
				continue
			}
			switch {
			case p.Proto == layers.IPProtocolTCP && p.SrcPort == podHTTP:
				tcp++
			case p.Proto == layers.IPProtocolUDP && p.SrcPort == ProbePort:
				udp++
			}
		}
		tcpReplies += tcp
		udpReplies += udp
		where := "on another node"
		if b.Node == from.Node {
			where = "on the sender's node"
		}
		if tcp == 0 && hs.OK > 0 {
			r.fail(kindBackendUnreached, "%s: backend %s (%s) sent nothing to %s in %d connections (wire at %s)", app, b.Name, where, from.Name, hs.Requests, pt)
		} else if tcp > 0 {
			r.Evidence = append(r.Evidence, reports.Evidence{Note: fmt.Sprintf("%s: backend %s %s answered %s through ClusterIP %s: %d TCP, %d UDP segments seen at %s", app, b.Name, where, from.IP, cip, tcp, udp, pt)})
		}
	}
	if hs.OK != hs.Requests || hs.Requests == 0 {
		r.fail(kindUnanswered, "%s: %d of %d HTTP requests to %s answered", app, hs.OK, hs.Requests, netip.AddrPortFrom(cip, HTTPPort))
	}
	if ps.Received != ps.Sent || ps.Sent == 0 || udpReplies < ps.Sent {
		r.fail(kindUnanswered, "%s: %d of %d UDP probes to %s answered (%d replies on the wire)", app, ps.Received, ps.Sent, netip.AddrPortFrom(cip, ProbePort), udpReplies)
	}
	r.figure("tcp_segments_from_backends_"+app, float64(tcpReplies))
	r.figure("udp_replies_"+app, float64(udpReplies))
	r.figure("clusterip_on_uplinks_"+app, float64(onWire))
	return udpReplies
}

// unheldClusterIP is an address of the ClusterIP range that no Service holds: the
// range's last ones, downward.
func (x *Lab) unheldClusterIP(ctx context.Context) (netip.Addr, error) {
	list, err := x.Client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return netip.Addr{}, err
	}
	held := map[netip.Addr]bool{}
	for _, s := range list.Items {
		for _, ip := range s.Spec.ClusterIPs {
			if a, err := netip.ParseAddr(ip); err == nil {
				held[a] = true
			}
		}
	}
	a := lastAddr(x.Plan.ServiceCIDR).Prev()
	for ; x.Plan.ServiceCIDR.Contains(a); a = a.Prev() {
		if !held[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("every address of %s is held", x.Plan.ServiceCIDR)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom16(b)
}
