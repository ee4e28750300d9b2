package conformance

import (
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	probewire "v6lab.dev/v6lab/fixtures/probe/wire"
	"v6lab.dev/v6lab/labs/hubble"
	"v6lab.dev/v6lab/labs/lab"
	"v6lab.dev/v6lab/labs/verdict"
)

// Each way a DNS answer can be wrong has its kind: no answer, another address, an
// error code, a pod whose nameserver is not the cluster DNS.
func TestJudgeAnswer(t *testing.T) {
	l, err := lab.Load("")
	require.NoError(t, err)
	x := &Lab{Lab: l, Plan: l.Plan}
	server := "[" + l.Plan.ClusterDNS.String() + "]:53"
	q := dnsQuery{from: Pod{Name: "echo-1"}, name: "echo.app-a.svc.cluster.local", typ: "AAAA", want: []string{"fd00:6:96::1234"}}
	for _, c := range []struct {
		s    probewire.DNSSummary
		kind string
	}{
		{probewire.DNSSummary{Server: server, RCode: "Success", Answers: []string{"fd00:6:96::1234"}}, ""},
		{probewire.DNSSummary{Server: server, Error: "i/o timeout"}, kindNoAnswer},
		{probewire.DNSSummary{Server: server, RCode: "Success", Answers: []string{"fd00:6:96::99"}}, kindWrongAnswer},
		{probewire.DNSSummary{Server: server, RCode: "NameError"}, kindWrongAnswer},
		{probewire.DNSSummary{Server: "[2001:db8::53]:53", RCode: "Success", Answers: []string{"fd00:6:96::1234"}}, kindResolvConf},
	} {
		r := Result{Pass: true}
		judgeAnswer(x, q, c.s, &r)
		if c.kind == "" {
			assert.True(t, r.Pass, r.Reason)
			continue
		}
		assert.Equal(t, []string{c.kind}, r.Failures, r.Reason)
	}
	// An A query must get no address at all.
	r := Result{Pass: true}
	judgeAnswer(x, dnsQuery{name: q.name, typ: "A", want: []string{}}, probewire.DNSSummary{Server: server, RCode: "Success", Answers: []string{}}, &r)
	assert.True(t, r.Pass, r.Reason)
}

// The wire's account of a pod's queries (countDNS), per transport: its packets to port 53 of the
// cluster DNS address or a CoreDNS pod on its veth (a TCP handshake's too), the
// CoreDNS pods' packets back to it on theirs; another pod's and other ports' aside.
func TestDNSProbes(t *testing.T) {
	from := Pod{Name: "echo-1", Namespace: "app-a", IP: netip.MustParseAddr("2001:db8:0:a01::10")}
	other := netip.MustParseAddr("2001:db8:0:a01::11")
	cdns, server := netip.MustParseAddr("fd00:6:96::a"), netip.MustParseAddr("2001:db8:0:a02::53")
	q := netip.AddrPortFrom(from.IP, 40000)
	to := func(a netip.Addr) netip.AddrPort { return netip.AddrPortFrom(a, 53) }
	udp, tcp := layers.IPProtocolUDP, layers.IPProtocolTCP
	caps := map[string]Captured{
		"n1:lxc1": {Packets: []verdict.Packet{segment(q, to(cdns), udp, 0), segment(q, to(server), udp, 0),
			segment(q, to(server), tcp, verdict.TCPSyn), segment(q, to(server), tcp, verdict.TCPAck),
			segment(q, netip.AddrPortFrom(server, 54), udp, 0), segment(netip.AddrPortFrom(other, 1), to(server), udp, 0)}},
		"n2:lxc9": {Packets: []verdict.Packet{segment(to(server), q, udp, 0), segment(to(server), q, tcp, verdict.TCPSyn|verdict.TCPAck),
			segment(to(server), netip.AddrPortFrom(other, 1), udp, 0)}},
	}
	w := &dnsQuerier{from: from, point: "n1:lxc1", protos: []string{"UDP", "TCP"}, start: time.Now(), end: time.Now()}
	queriers := map[netip.Addr]*dnsQuerier{from.IP: w}
	servers := map[netip.Addr]bool{server: true}
	countDNS(queriers, servers, cdns, caps, []string{"n2:lxc9"})
	assert.Equal(t, 2, w.queries, "the two UDP queries; TCP segments without payload carry none")
	assert.Equal(t, 1, w.answers, "the UDP answer")
	ps := dnsProbes(queriers, servers, cdns)
	require.Len(t, ps, 2)
	byProto := map[string]hubble.Probe{ps[0].Proto: ps[0], ps[1].Proto: ps[1]}
	assert.Equal(t, 2, byProto["UDP"].Sent, "to the cluster DNS address and to the CoreDNS pod")
	assert.Equal(t, 1, byProto["UDP"].Delivered)
	assert.Equal(t, 2, byProto["TCP"].Sent, "the SYN and the ACK")
	assert.Equal(t, 1, byProto["TCP"].Delivered)
	for _, p := range ps {
		assert.Equal(t, netip.AddrPortFrom(cdns, 53), p.Dst)
		assert.Equal(t, []netip.AddrPort{to(server)}, p.Backends)
		assert.True(t, p.Replies)
	}
}
