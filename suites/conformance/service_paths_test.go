package conformance

import (
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	probewire "v6lab.dev/v6lab/fixtures/probe/wire"
	"v6lab.dev/v6lab/labs/lab"
	"v6lab.dev/v6lab/labs/verdict"
)

// servicePods is the default lab with app-a's echo backends on every node and a
// sender of app-b on server1.
func servicePods(t *testing.T) (*Lab, Pod, []Pod) {
	l, err := lab.Load("")
	require.NoError(t, err)
	x := &Lab{Lab: l, Plan: l.Plan}
	from := Pod{Name: "echo-b", Namespace: "app-b", Node: "server1", IP: netip.MustParseAddr("2001:db8:0:a02::10")}
	var pods []Pod
	for i, n := range l.Plan.KubeNodes {
		pods = append(pods, Pod{Name: "echo-a-" + n.Name, Namespace: "app-a", Node: n.Name,
			IP: netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0x0a, 0x01, 15: byte(0x10 + i)})})
	}
	return x, from, pods
}

func segment(src, dst netip.AddrPort, proto layers.IPProtocol, flags uint8) verdict.Packet {
	return verdict.Packet{Time: time.Now(), IPv6: true, Proto: proto, Src: src.Addr(), Dst: dst.Addr(),
		SrcPort: src.Port(), DstPort: dst.Port(), TCPFlags: flags}
}

// clusterIPCaps: each backend answers the sender where it shows (a remote one on its
// node's uplink, the local one on its veth), every request translated on the way.
func clusterIPCaps(x *Lab, from Pod, pods []Pod, ifaces map[netip.Addr]string, skip string) map[string]Captured {
	caps := map[string]Captured{}
	for _, b := range pods {
		if b.Name == skip {
			continue
		}
		pt := x.Uplink(b.Node)
		if b.Node == from.Node {
			pt = ifaces[b.IP]
		}
		c := caps[pt]
		c.Packets = append(c.Packets,
			segment(netip.AddrPortFrom(b.IP, podHTTP), netip.AddrPortFrom(from.IP, 40000), layers.IPProtocolTCP, verdict.TCPSyn|verdict.TCPAck),
			segment(netip.AddrPortFrom(b.IP, ProbePort), netip.AddrPortFrom(from.IP, 40001), layers.IPProtocolUDP, 0))
		caps[pt] = c
	}
	return caps
}

func TestJudgeClusterIP(t *testing.T) {
	x, from, pods := servicePods(t)
	ifaces := map[netip.Addr]string{pods[0].IP: "server1:lxc1"}
	var uplinks []string
	for _, n := range x.Plan.KubeNodes {
		uplinks = append(uplinks, x.Uplink(n.Name))
	}
	cip := netip.MustParseAddr("fd00:6:96::1234")
	hs := HTTPSummary{Requests: 3, OK: 3}
	ps := ProbeSummary{Sent: 3, Received: 3}

	r := Result{Pass: true}
	judgeClusterIP(x, "app-a", from, pods, cip, uplinks, ifaces, clusterIPCaps(x, from, pods, ifaces, ""), hs, ps, &r)
	assert.True(t, r.Pass, r.Reason)
	assert.Equal(t, 0.0, r.Figures["clusterip_on_uplinks_app-a"])

	// The ClusterIP untranslated on the sender's uplink.
	caps := clusterIPCaps(x, from, pods, ifaces, "")
	up := caps[x.Uplink("server1")]
	up.Packets = append(up.Packets, segment(netip.AddrPortFrom(from.IP, 40000), netip.AddrPortFrom(cip, HTTPPort), layers.IPProtocolTCP, verdict.TCPSyn))
	caps[x.Uplink("server1")] = up
	r = Result{Pass: true}
	judgeClusterIP(x, "app-a", from, pods, cip, uplinks, ifaces, caps, hs, ps, &r)
	assert.Equal(t, []string{kindClusterIPOnWire}, r.Failures, r.Reason)

	// A remote backend that never answered.
	r = Result{Pass: true}
	judgeClusterIP(x, "app-a", from, pods, cip, uplinks, ifaces, clusterIPCaps(x, from, pods, ifaces, pods[2].Name), hs, ps, &r)
	assert.Contains(t, r.Failures, kindBackendUnreached, r.Reason)
	assert.Contains(t, r.Reason, pods[2].Name)
}

func TestLastAddr(t *testing.T) {
	assert.Equal(t, "fd00:6:96::ffff", lastAddr(netip.MustParsePrefix("fd00:6:96::/112")).String())
	assert.Equal(t, "2001:db8::ffff:ffff:ffff:ffff", lastAddr(netip.MustParsePrefix("2001:db8::1/64")).String())
}

func TestJudgeAffinity(t *testing.T) {
	_, _, pods := servicePods(t)
	client := netip.MustParseAddrPort("[2001:db8:0:e01::2]:40000")
	vip := netip.MustParseAddr("2001:db8:0:101::3")
	var points []string
	for _, p := range pods {
		points = append(points, p.Node+":lxc-"+p.Name)
	}
	caps := func(by ...int) map[string]Captured {
		out := map[string]Captured{}
		for _, i := range by {
			c := out[points[i]]
			c.Packets = append(c.Packets, segment(netip.AddrPortFrom(pods[i].IP, podHTTP), client, layers.IPProtocolTCP, verdict.TCPSyn|verdict.TCPAck))
			out[points[i]] = c
		}
		return out
	}
	hs := HTTPSummary{Requests: 4, OK: 4}
	block := netip.MustParsePrefix("2001:db8:0:a00::/56")
	r := Result{Pass: true}
	judgeAffinity(pods, points, caps(1, 1, 1, 1), hs, vip, block, &r)
	assert.True(t, r.Pass, r.Reason)
	assert.Equal(t, 1.0, r.Figures["backends_reached"])

	r = Result{Pass: true}
	judgeAffinity(pods, points, caps(0, 1, 1, 2), hs, vip, block, &r)
	assert.Equal(t, []string{kindSeveralBackends}, r.Failures, r.Reason)
	assert.Equal(t, 3.0, r.Figures["backends_reached"])

	r = Result{Pass: true}
	judgeAffinity(pods, points, caps(1, 1), hs, vip, block, &r)
	assert.Equal(t, []string{kindNothingSeen}, r.Failures, "fewer SYN-ACKs than connections prove nothing: %s", r.Reason)

	// Another check's pod connecting to a second backend meanwhile is not the client.
	r = Result{Pass: true}
	c := caps(1, 1, 1, 1)
	other := c[points[0]]
	other.Packets = append(other.Packets, segment(netip.AddrPortFrom(pods[0].IP, podHTTP), netip.AddrPortFrom(pods[2].IP, 41000), layers.IPProtocolTCP, verdict.TCPSyn|verdict.TCPAck))
	c[points[0]] = other
	judgeAffinity(pods, points, c, hs, vip, block, &r)
	assert.True(t, r.Pass, r.Reason)
}

// A new connection that reaches a removed backend after the budget fails; the
// established stream staying on it is measured, not failed; the client's stream gives
// the loss window.
func TestJudgeRemoval(t *testing.T) {
	x, _, pods := servicePods(t)
	b := pods[1]
	client := x.Plan.HostByRole("client").Address
	vip := netip.MustParseAddr("2001:db8:0:101::5")
	t0 := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	gone := t0.Add(time.Second)
	points := []string{x.HostLink("client"), "agent1:lxc-b"}
	probe := func(at time.Duration, src, dst netip.Addr, reply bool) verdict.Packet {
		p := segment(netip.AddrPortFrom(src, ProbePort), netip.AddrPortFrom(dst, removalSport), layers.IPProtocolUDP, 0)
		if !reply {
			p.SrcPort, p.DstPort = removalSport, ProbePort
		}
		p.Time = t0.Add(at)
		p.Probe = &probewire.Probe{Reply: reply, Seq: uint64(at / (10 * time.Millisecond))}
		return p
	}
	run := func(newConnAt time.Duration) Result {
		var atClient, atVeth []verdict.Packet
		for at := time.Duration(0); at < 5*time.Second; at += 10 * time.Millisecond {
			atClient = append(atClient, probe(at, client, vip, false))
			if at < 1500*time.Millisecond || at > 1800*time.Millisecond { // 300 ms lost
				atClient = append(atClient, probe(at+time.Millisecond, vip, client, true))
			}
			if at <= 4*time.Second { // the established stream stays on b
				atVeth = append(atVeth, probe(at+time.Millisecond, b.IP, client, true))
			}
		}
		synAck := segment(netip.AddrPortFrom(b.IP, podHTTP), netip.AddrPortFrom(client, 41000), layers.IPProtocolTCP, verdict.TCPSyn|verdict.TCPAck)
		synAck.Time = t0.Add(newConnAt)
		atVeth = append(atVeth, synAck)
		caps := map[string]Captured{points[0]: {Packets: atClient}, points[1]: {Packets: atVeth}}
		r := Result{Pass: true}
		judgeRemoval(x, "unready", b, vip, gone, points[0], points[1], caps, HTTPSummary{Requests: 30, OK: 30}, &r)
		return r
	}
	r := run(2 * time.Second) // within the budget
	assert.True(t, r.Pass, r.Reason)
	assert.InDelta(t, 320, r.Figures["loss_ms_unready"], 5, "last reply at 1.491 s, the next at 1.811 s")
	assert.InDelta(t, 3001, r.Figures["kept_stream_on_backend_ms_unready"], 1)

	r = run(3500 * time.Millisecond)
	assert.Equal(t, []string{kindReachedRemoved}, r.Failures, r.Reason)
}

// maglevCaps: in each phase, each flow's probes show on the veth of the backend
// pick(phase, flow) gives.
func maglevCaps(pods []Pod, veths []string, phases []maglevPhase, client netip.Addr, pick func(ph, f int) int) map[string]Captured {
	caps := map[string]Captured{}
	for i, ph := range phases {
		for f := range maglevFlows {
			b := pods[pick(i, f)]
			pt := veths[pick(i, f)]
			c := caps[pt]
			// A veth shows what its pod sends: the backend's reply.
			p := segment(netip.AddrPortFrom(b.IP, ProbePort), netip.AddrPortFrom(client, uint16(maglevSport+f)), layers.IPProtocolUDP, 0)
			p.Time = ph.flows[f][0].Add(time.Millisecond)
			p.Probe = &probewire.Probe{Seq: 1, Reply: true}
			c.Packets = append(c.Packets, p)
			caps[pt] = c
		}
	}
	return caps
}

func TestJudgeMaglev(t *testing.T) {
	x, _, pods := servicePods(t)
	client := x.Plan.HostByRole("client").Address
	veths := []string{"server1:lxc1", "agent1:lxc2", "agent2:lxc3"}
	var phases []maglevPhase
	t0 := time.Now()
	for i, n := range x.Plan.KubeNodes {
		ph := maglevPhase{node: n.Name, start: t0.Add(time.Duration(i) * time.Second), end: t0.Add(time.Duration(i+1) * time.Second)}
		for f := range maglevFlows {
			ph.flows[f] = [2]time.Time{ph.start.Add(time.Duration(f) * 100 * time.Millisecond), ph.start.Add(time.Duration(f)*100*time.Millisecond + 50*time.Millisecond)}
		}
		phases = append(phases, ph)
	}

	r := Result{Pass: true}
	block := x.Plan.Pods.Block
	judgeMaglev(pods, veths, maglevCaps(pods, veths, phases, client, func(_, f int) int { return f % 3 }), phases, client, block, &r)
	assert.True(t, r.Pass, r.Reason)

	// Other checks' traffic at other backends meanwhile — a backend's reply to a pod,
	// a backend's own probe to the world host — is not the flows'.
	r = Result{Pass: true}
	caps := maglevCaps(pods, veths, phases, client, func(_, f int) int { return f % 3 })
	world := netip.MustParseAddrPort("[2001:db8:0:f01::2]:9000")
	for i, ph := range phases {
		pt := veths[(i+1)%3]
		c := caps[pt]
		reply := segment(netip.AddrPortFrom(pods[(i+1)%3].IP, ProbePort), netip.AddrPortFrom(pods[i%3].IP, 42000), layers.IPProtocolUDP, 0)
		reply.Probe = &probewire.Probe{Seq: 1, Reply: true}
		own := segment(netip.AddrPortFrom(pods[(i+1)%3].IP, 42001), world, layers.IPProtocolUDP, 0)
		own.Probe = &probewire.Probe{Seq: 1}
		for _, p := range []verdict.Packet{reply, own} {
			p.Time = ph.flows[0][0].Add(time.Millisecond)
			c.Packets = append(c.Packets, p)
		}
		caps[pt] = c
	}
	judgeMaglev(pods, veths, caps, phases, client, block, &r)
	assert.True(t, r.Pass, r.Reason)
	assert.Equal(t, float64(maglevFlows), r.Figures["flows_same_backend"])

	// A late reply of the flow before, at its own backend, inside the next flow's
	// window (the lab under load) is not the next flow's.
	r = Result{Pass: true}
	caps = maglevCaps(pods, veths, phases, client, func(_, f int) int { return f % 3 })
	late := segment(netip.AddrPortFrom(pods[0].IP, ProbePort), netip.AddrPortFrom(client, maglevSport), layers.IPProtocolUDP, 0)
	late.Probe = &probewire.Probe{Seq: 3, Reply: true}
	late.Time = phases[1].flows[1][0].Add(2 * time.Millisecond)
	c := caps[veths[0]]
	c.Packets = append(c.Packets, late)
	caps[veths[0]] = c
	judgeMaglev(pods, veths, caps, phases, client, block, &r)
	assert.True(t, r.Pass, r.Reason)

	// Flow 2 reaches another backend through the second node.
	r = Result{Pass: true}
	judgeMaglev(pods, veths, maglevCaps(pods, veths, phases, client, func(ph, f int) int {
		if ph == 1 && f == 2 {
			return (f + 1) % 3
		}
		return f % 3
	}), phases, client, block, &r)
	assert.False(t, r.Pass)
	assert.Equal(t, []string{kindBackendsDiffer}, r.Failures)
	assert.Equal(t, float64(maglevFlows-1), r.Figures["flows_same_backend"])

	// Nothing on the veths proves nothing.
	r = Result{Pass: true}
	judgeMaglev(pods, veths, map[string]Captured{}, phases, client, block, &r)
	assert.Contains(t, r.Failures, kindNothingSeen)
}

// pmtuCaps: two rounds of one size on the client's link; ptb sends a Packet Too Big
// (MTU 9476) after the first request, answered says whether the requests are
// answered, and later requests are sent at the given length.
func pmtuCaps(client, vip netip.Addr, t0 time.Time, ptb, answered bool, later int) (Captured, []pmtuRound) {
	var c Captured
	add := func(p verdict.Packet, at time.Duration) {
		p.Time = t0.Add(at)
		c.Packets = append(c.Packets, p)
	}
	for i := range 6 {
		q := segment(netip.AddrPortFrom(client, 40000), netip.AddrPortFrom(vip, ProbePort), layers.IPProtocolUDP, 0)
		q.IPLength = 9500
		if i > 0 && ptb {
			q.IPLength = later
		}
		add(q, time.Duration(i)*10*time.Millisecond)
		if i == 0 && ptb {
			add(verdict.Packet{IPv6: true, Proto: layers.IPProtocolICMPv6, Src: vip, Dst: client, TooBig: verdict.TooBig{MTU: 9476, Dst: vip}}, time.Millisecond)
			continue
		}
		if answered {
			a := segment(netip.AddrPortFrom(vip, ProbePort), netip.AddrPortFrom(client, 40000), layers.IPProtocolUDP, 0)
			a.Probe = &probewire.Probe{Reply: true, Seq: uint64(i)}
			add(a, time.Duration(i)*10*time.Millisecond+time.Millisecond)
		}
	}
	return c, []pmtuRound{{size: 9452, start: t0, end: t0.Add(25 * time.Millisecond)}, {size: 9452, start: t0.Add(30 * time.Millisecond), end: t0.Add(70 * time.Millisecond)}}
}

func TestJudgePMTU(t *testing.T) {
	client, vip := netip.MustParseAddr("2001:db8:0:e01::2"), netip.MustParseAddr("2001:db8:0:101::2")
	t0 := time.Now()
	for _, tc := range []struct {
		name           string
		ptb, answered  bool
		later          int
		want           []string
		largest, ptbMT float64
	}{
		{"answered whole", false, true, 0, nil, 9452, 0},
		{"too big, honoured, answered", true, true, 1280, nil, 9452, 9476},
		{"black hole", false, false, 0, []string{kindBlackHole}, 0, 0},
		{"too big ignored", true, false, 9500, []string{kindTooBigIgnored}, 0, 9476},
		{"too big honoured, lost", true, false, 1280, []string{kindTooBigThenLost}, 0, 9476},
	} {
		c, rounds := pmtuCaps(client, vip, t0, tc.ptb, tc.answered, tc.later)
		r := Result{Pass: true}
		judgePMTU(c, rounds, client, vip, &r)
		assert.Equal(t, tc.want, r.Failures, tc.name)
		assert.Equal(t, tc.want == nil, r.Pass, tc.name)
		assert.Equal(t, tc.largest, r.Figures["largest_udp_payload"], tc.name)
		assert.Equal(t, tc.ptbMT, r.Figures["too_big_mtu"], tc.name)
	}
}

func TestPMTUSizes(t *testing.T) {
	assert.Equal(t, []int{1232, 1452, 8952, 9380, 9452}, pmtuSizes(9500))
	assert.Equal(t, []int{1232, 1380, 1452}, pmtuSizes(1500))
}

func TestJudgePolicyProbe(t *testing.T) {
	_, from, pods := servicePods(t)
	to := netip.AddrPortFrom(pods[1].IP, ProbePort)
	t0 := time.Now()
	at := func(p verdict.Packet, file string) verdict.Packet {
		p.Time, p.File = t0.Add(time.Millisecond), file
		return p
	}
	req := segment(netip.AddrPortFrom(from.IP, 40000), to, layers.IPProtocolUDP, 0)
	reply := segment(to, netip.AddrPortFrom(from.IP, 40000), layers.IPProtocolUDP, 0)
	reply.Probe = &probewire.Probe{Reply: true}
	veth := Captured{File: "veth", Packets: []verdict.Packet{at(req, "veth")}}
	uplink := Captured{File: "uplink", Packets: []verdict.Packet{at(req, "uplink")}}
	answered := Captured{File: "far", Packets: []verdict.Packet{at(reply, "far")}}
	probe := func(allowed, egress bool) policyProbe {
		return policyProbe{what: "w", from: from, to: to, allowed: allowed, egress: egress, start: t0, end: t0.Add(time.Second)}
	}
	for _, tc := range []struct {
		name            string
		allowed, egress bool
		uplink, far     Captured
		want            []string
	}{
		{"allowed and answered", true, false, uplink, answered, nil},
		{"allowed, never answered", true, false, uplink, Captured{File: "far"}, []string{kindNotAllowed}},
		{"dropped at the target", false, false, uplink, Captured{File: "far"}, nil},
		{"not allowed, answered", false, false, uplink, answered, []string{kindNotDropped}},
		{"egress: dropped at the source", false, true, Captured{File: "uplink"}, Captured{File: "far"}, nil},
		{"egress: left the node", false, true, uplink, Captured{File: "far"}, []string{kindNotDropped}},
	} {
		r := Result{Pass: true}
		judgePolicyProbe("step", probe(tc.allowed, tc.egress), veth, tc.uplink, tc.far, &r)
		assert.Equal(t, tc.want, r.Failures, tc.name)
	}
	// Nothing sent proves nothing.
	r := Result{Pass: true}
	judgePolicyProbe("step", probe(false, true), Captured{File: "veth"}, Captured{File: "uplink"}, Captured{File: "far"}, &r)
	assert.Equal(t, []string{kindNothingSeen}, r.Failures)
	// A step's probes run at once: another pod's allowed probe arriving at the same
	// target, and answered, in the same window is not this one getting through.
	other := netip.AddrPortFrom(pods[2].IP, 40001)
	require.NotEqual(t, from.IP, other.Addr())
	theirs := Captured{File: "far", Packets: []verdict.Packet{
		at(segment(other, to, layers.IPProtocolUDP, 0), "far"), at(segment(to, other, layers.IPProtocolUDP, 0), "far")}}
	theirs.Packets[1].Probe = &probewire.Probe{Reply: true}
	r = Result{Pass: true}
	judgePolicyProbe("step", probe(false, false), veth, uplink, theirs, &r)
	assert.True(t, r.Pass, r.Reason)
	r = Result{Pass: true}
	judgePolicyProbe("step", probe(true, false), veth, uplink, theirs, &r)
	assert.Equal(t, []string{kindNotAllowed}, r.Failures, "another pod's answer is not this probe's")
	// The node's own connections to the same address and port on its uplink (the API
	// server on the server node to another node's kubelet, for a concurrent check's
	// kubectl exec) are not this egress probe leaving the node.
	nodeOwn := at(segment(netip.AddrPortFrom(netip.MustParseAddr("2001:db8::12"), 51234), to, layers.IPProtocolTCP, verdict.TCPSyn), "uplink")
	r = Result{Pass: true}
	judgePolicyProbe("step", probe(false, true), veth, Captured{File: "uplink", Packets: []verdict.Packet{nodeOwn}}, Captured{File: "far"}, &r)
	assert.True(t, r.Pass, r.Reason)
}

func TestJudgeNDP(t *testing.T) {
	_, from, _ := servicePods(t)
	world := netip.MustParseAddr("2001:db8:0:e02::2")
	gw := netip.MustParseAddr("2001:db8:0:a02::1")
	t0 := time.Now()
	icmp := func(typ uint8, src, dst netip.Addr, ms int) verdict.Packet {
		return verdict.Packet{IPv6: true, Proto: layers.IPProtocolICMPv6, Src: src, Dst: dst, ICMPv6: layers.CreateICMPv6TypeCode(typ, 0), Time: t0.Add(time.Duration(ms) * time.Millisecond)}
	}
	probe := segment(netip.AddrPortFrom(from.IP, 40000), netip.AddrPortFrom(world, ProbePort), layers.IPProtocolUDP, 0)
	probe.Time = t0.Add(3 * time.Millisecond)
	ns := icmp(layers.ICMPv6TypeNeighborSolicitation, from.IP, netip.MustParseAddr("ff02::1:ff00:1"), 1)
	na := icmp(layers.ICMPv6TypeNeighborAdvertisement, gw, from.IP, 2)

	r := Result{Pass: true}
	judgeNDP(from, Captured{Packets: []verdict.Packet{ns, na, probe}}, t0, t0.Add(time.Second), world, &r)
	assert.True(t, r.Pass, r.Reason)
	r = Result{Pass: true}
	judgeNDP(from, Captured{Packets: []verdict.Packet{ns}}, t0, t0.Add(time.Second), world, &r)
	assert.Equal(t, []string{kindNDPBroken}, r.Failures)
	r = Result{Pass: true}
	judgeNDP(from, Captured{Packets: []verdict.Packet{probe}}, t0, t0.Add(time.Second), world, &r)
	assert.Equal(t, []string{kindNothingSeen}, r.Failures)
}

func TestJudgeWithdrawal(t *testing.T) {
	vip := netip.MustParsePrefix("2001:db8:0:101::8/128")
	t0 := time.Now()
	update := func(ms int, announced, withdrawn []netip.Prefix) verdict.Packet {
		return verdict.Packet{Time: t0.Add(time.Duration(ms) * time.Millisecond), BGP: &verdict.BGPUpdate{Announced: announced, Withdrawn: withdrawn}}
	}
	c := Captured{Packets: []verdict.Packet{
		update(-50, nil, []netip.Prefix{vip}), // before the cause: not this withdrawal
		update(300, nil, []netip.Prefix{vip}),
		update(1500, []netip.Prefix{vip}, nil),
	}}
	r := Result{Pass: true}
	judgeWithdrawal(c, vip, "server1", t0, t0.Add(time.Second), &r)
	assert.True(t, r.Pass, r.Reason)
	assert.Equal(t, 300.0, r.Figures["withdrawn_ms"])
	assert.Equal(t, 500.0, r.Figures["announced_again_ms"])

	r = Result{Pass: true}
	judgeWithdrawal(Captured{Packets: c.Packets[:1]}, vip, "server1", t0, t0.Add(time.Second), &r)
	assert.Equal(t, []string{kindNotWithdrawn}, r.Failures)
}

func TestOwnFlows(t *testing.T) {
	client, vip, other := netip.MustParseAddr("2001:db8:0:e01::2"), netip.MustParseAddr("2001:db8:0:102::1"), netip.MustParseAddr("2001:db8:0:101::6")
	backend := netip.MustParseAddr("2001:db8:0:a02::10")
	pkts := []verdict.Packet{
		segment(netip.AddrPortFrom(client, 40000), netip.AddrPortFrom(vip, HTTPPort), layers.IPProtocolTCP, verdict.TCPSyn),
		segment(netip.AddrPortFrom(vip, HTTPPort), netip.AddrPortFrom(client, 40000), layers.IPProtocolTCP, verdict.TCPSyn|verdict.TCPAck),
		// A reply of the check's flow from a wrong source (a backend's address leaking):
		// kept (the check must see it).
		segment(netip.AddrPortFrom(backend, podHTTP), netip.AddrPortFrom(client, 40000), layers.IPProtocolTCP, verdict.TCPAck),
		// An earlier check's abandoned connection, retransmitted from another VIP, and
		// the client's reset: left out.
		segment(netip.AddrPortFrom(other, TCPPort), netip.AddrPortFrom(client, 45000), layers.IPProtocolTCP, verdict.TCPAck),
		segment(netip.AddrPortFrom(client, 45000), netip.AddrPortFrom(other, TCPPort), layers.IPProtocolTCP, verdict.TCPRst),
		// A concurrent check's UDP probes from the port of one of this check's TCP
		// connections, to another VIP, and their replies: left out.
		segment(netip.AddrPortFrom(client, 40000), netip.AddrPortFrom(other, ProbePort), layers.IPProtocolUDP, 0),
		segment(netip.AddrPortFrom(other, ProbePort), netip.AddrPortFrom(client, 40000), layers.IPProtocolUDP, 0),
	}
	own := ownFlows(pkts, client, vip, []netip.Addr{vip, other})
	assert.Len(t, own, 3)
	// The same port, same protocol, to another VIP: left out by the VIPs it knows.
	pkts = append(pkts, segment(netip.AddrPortFrom(client, 40000), netip.AddrPortFrom(other, HTTPPort), layers.IPProtocolTCP, verdict.TCPSyn))
	assert.Len(t, ownFlows(pkts, client, vip, []netip.Addr{other}), 3)
}

// The wire's account of the client's exchange with a VIP: over UDP its probes to the
// VIP and the replies; over TCP every segment to the VIP's HTTP port and back; in the
// window; a backend's address (at its own port) is Hubble's, not the wire's.
func TestVIPProbe(t *testing.T) {
	client := netip.MustParseAddrPort("[2001:db8:c::10]:40000")
	vip := netip.MustParseAddrPort("[2001:db8:100::10]:9000")
	backend := Pod{Name: "echo-a", IP: netip.MustParseAddr("2001:db8:0:a01::10")}
	start := time.Now()
	probe := func(src, dst netip.AddrPort, reply bool) verdict.Packet {
		p := segment(src, dst, layers.IPProtocolUDP, 0)
		p.Probe = &probewire.Probe{Reply: reply}
		return p
	}
	pkts := []verdict.Packet{
		probe(client, vip, false),
		probe(client, vip, false),
		probe(vip, client, true),
		segment(client, netip.AddrPortFrom(vip.Addr(), HTTPPort), layers.IPProtocolTCP, verdict.TCPSyn),
	}
	p := vipProbe("app-a: the client → its VIP", "UDP", pkts, client.Addr(), vip, vip.Port(), []Pod{backend}, start, time.Now().Add(time.Second))
	assert.Equal(t, 2, p.Sent)
	assert.Equal(t, 1, p.Delivered)
	assert.Equal(t, []netip.AddrPort{netip.AddrPortFrom(backend.IP, vip.Port())}, p.Backends)
	p = vipProbe("app-a: the client → its VIP", "UDP", pkts, client.Addr(), vip, vip.Port(), nil, start.Add(time.Hour), start.Add(2*time.Hour))
	assert.Zero(t, p.Sent+p.Delivered, "outside the window")
	web := netip.AddrPortFrom(vip.Addr(), HTTPPort)
	pkts = append(pkts, segment(web, client, layers.IPProtocolTCP, verdict.TCPSyn|verdict.TCPAck), segment(client, web, layers.IPProtocolTCP, verdict.TCPAck),
		segment(netip.AddrPortFrom(backend.IP, podHTTP), client, layers.IPProtocolTCP, verdict.TCPAck))
	p = vipProbe("app-a: the client → its VIP", "TCP", pkts, client.Addr(), web, podHTTP, []Pod{backend}, start, time.Now().Add(time.Second))
	assert.Equal(t, 2, p.Sent, "the SYN and the ACK")
	assert.Equal(t, 1, p.Delivered, "the VIP's SYN-ACK; the backend's own address is not the VIP's")
	assert.Equal(t, "TCP", p.Proto)
	assert.Equal(t, []netip.AddrPort{netip.AddrPortFrom(backend.IP, podHTTP)}, p.Backends)
}

// clusterIPProbe counts a sender's UDP requests on its veth (to a backend: socket LB
// translated them; to the ClusterIP itself: the control) and takes judgeClusterIP's
// count of the backends' replies where they show (a remote one's on its uplink, inside VXLAN too; a local one's on
// its veth); Hubble is to match the backends.
func TestClusterIPProbe(t *testing.T) {
	l, err := lab.Load("embedded:default")
	require.NoError(t, err)
	x := &Lab{Lab: l, Plan: l.Plan}
	a, b := l.Plan.KubeNodes[0].Name, l.Plan.KubeNodes[1].Name
	from := Pod{Name: "echo-b", Node: a, IP: netip.MustParseAddr("2001:db8:0:b01::10")}
	local := Pod{Name: "echo-a-1", Node: a, IP: netip.MustParseAddr("2001:db8:0:a01::10")}
	remote := Pod{Name: "echo-a-2", Node: b, IP: netip.MustParseAddr("2001:db8:0:a02::10")}
	cip := netip.MustParseAddr("fd00:6:96::20")
	src := netip.AddrPortFrom(from.IP, 41000)
	to := func(p Pod) netip.AddrPort { return netip.AddrPortFrom(p.IP, ProbePort) }
	udp := func(s, d netip.AddrPort) verdict.Packet { return segment(s, d, layers.IPProtocolUDP, 0) }
	inVXLAN := udp(to(remote), src)
	outer := udp(netip.MustParseAddrPort("[2001:db8:ffff::2]:50000"), netip.MustParseAddrPort("[2001:db8:ffff::1]:8472"))
	outer.Inner = &inVXLAN
	ifaces := map[netip.Addr]string{local.IP: a + ":lxc1", from.IP: a + ":lxc2"}
	caps := map[string]Captured{
		a + ":lxc2": {Packets: []verdict.Packet{udp(src, to(remote)), udp(src, to(local)), udp(src, netip.AddrPortFrom(cip, ProbePort)),
			udp(src, netip.AddrPortFrom(remote.IP, 9))}},
		x.Uplink(a): {Packets: []verdict.Packet{udp(src, to(remote))}},
		x.Uplink(b): {Packets: []verdict.Packet{udp(to(remote), src), outer}},
		a + ":lxc1": {Packets: []verdict.Packet{udp(to(local), src), udp(to(local), netip.AddrPortFrom(remote.IP, 9))}},
	}
	var uplinks []string
	for _, n := range l.Plan.KubeNodes {
		uplinks = append(uplinks, x.Uplink(n.Name))
	}
	replies := judgeClusterIP(x, "app-a", from, []Pod{local, remote}, cip, uplinks, ifaces, caps, HTTPSummary{}, ProbeSummary{}, &Result{Pass: true})
	p := clusterIPProbe("app-a", from, []Pod{local, remote}, cip, ifaces, caps, replies, time.Now(), time.Now())
	assert.Equal(t, 3, p.Sent, "on the sender's veth: to each backend and to the ClusterIP itself")
	assert.Equal(t, 3, p.Delivered, "the remote backend's replies (one in VXLAN), the local one's")
	assert.Equal(t, []netip.AddrPort{to(local), to(remote)}, p.Backends)
	assert.True(t, p.Replies)
}

// The wire's account of a client's connections for Hubble's comes from the
// return-path analyzer: sent, every request where it entered; delivered, every reply
// wherever it left (DSR: the backend's node's uplink); the backends at their HTTP port.
func TestReturnPathProbe(t *testing.T) {
	client := netip.MustParseAddrPort("[2001:db8:c::10]:40000")
	vip := netip.MustParseAddrPort("[2001:db8:100::10]:80")
	backend := Pod{Name: "dsr-echo", IP: netip.MustParseAddr("2001:db8:0:a03::10")}
	tcp := func(s, d netip.AddrPort, f uint8) verdict.Packet { return segment(s, d, layers.IPProtocolTCP, f) }
	files := map[string][]verdict.Packet{
		"entry.pcapng":   {tcp(client, vip, verdict.TCPSyn), tcp(client, vip, verdict.TCPAck)},
		"backend.pcapng": {tcp(vip, client, verdict.TCPSyn|verdict.TCPAck), tcp(vip, client, verdict.TCPAck), tcp(vip, client, verdict.TCPAck)},
	}
	v := verdict.ReturnPath(files, vip.Addr(), client.Addr(), verdict.Match{Proto: "tcp"}, "backend.pcapng")
	require.True(t, v.Pass, v.Reason)
	p := returnPathProbe("the client → a VIP", v, client.Addr(), vip, []Pod{backend}, time.Now(), time.Now())
	assert.Equal(t, 2, p.Sent)
	assert.Equal(t, 3, p.Delivered)
	assert.Equal(t, "TCP", p.Proto)
	assert.Equal(t, []netip.AddrPort{netip.AddrPortFrom(backend.IP, podHTTP)}, p.Backends)
	assert.True(t, p.Replies)
}

// A pod-connectivity exchange counts its sender's probes only: another pod's probes to
// the same destination in the same window (hubble-flows' to the world host, beside it
// in its group), unanswered, neither add to it nor make it look unanswered.
func TestExchangeOfOneSender(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	world := netip.MustParseAddrPort("[2001:db8:0:e00::10]:9000")
	pod, other := netip.MustParseAddr("2001:db8:0:a01::10"), netip.MustParseAddr("2001:db8:0:a01:2::20")
	probe := func(i int, src netip.Addr, reply bool) verdict.Packet {
		p := segment(netip.AddrPortFrom(src, 40000), world, layers.IPProtocolUDP, 0)
		if reply {
			p = segment(world, netip.AddrPortFrom(src, 40000), layers.IPProtocolUDP, 0)
		}
		p.Time = t0.Add(time.Duration(i) * 10 * time.Millisecond)
		p.Probe = &probewire.Probe{Reply: reply, Seq: uint64(i)}
		return p
	}
	var pkts []verdict.Packet
	for i := range 5 {
		pkts = append(pkts, probe(i, pod, false), probe(i, pod, true), probe(i, other, false)) // the other's dropped
	}
	req, rep := exchangeOf(pkts, []netip.Addr{pod}, world, t0, t0.Add(time.Second))
	assert.Equal(t, 5, req)
	assert.Equal(t, 5, rep, "every request of the pair answered")
	allReq, allRep := exchange(pkts, world, t0, t0.Add(time.Second))
	assert.Greater(t, allReq, allRep, "without the sender's address, the other's probes look unanswered")
}

// etp-local's forced stream: only its own requests on the backend's node's uplink count
// as forwarded (to the VIP, or translated to the backend), never other checks' probes
// to other pods of that node in the same window.
func TestCountForwarded(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 5, 30, 0, 0, time.UTC)
	vip, backend := netip.MustParseAddr("2001:db8:0:101::3"), netip.MustParseAddr("2001:db8:0:a01:2::30")
	client, node := netip.MustParseAddr("2001:db8:0:e01::2"), netip.MustParseAddr("2001:db8::12")
	other := netip.MustParseAddr("2001:db8:0:a02:2::40") // another pod of the backend's node
	req := func(src, dst netip.Addr) verdict.Packet {
		p := segment(netip.AddrPortFrom(src, 40000), netip.AddrPortFrom(dst, ProbePort), layers.IPProtocolUDP, 0)
		p.Time, p.Probe = t0.Add(time.Millisecond), &probewire.Probe{}
		return p
	}
	end := t0.Add(time.Second)
	assert.Zero(t, countForwarded([]verdict.Packet{req(client, other), req(other, client)}, vip, backend, t0, end), "other probes are not the forced stream")
	assert.Equal(t, 2, countForwarded([]verdict.Packet{req(client, vip), req(node, backend), req(client, other)}, vip, backend, t0, end))
}
