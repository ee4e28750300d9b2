package conformance

import (
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"v6lab.dev/v6lab/labs/lab"
	"v6lab.dev/v6lab/labs/verdict"
)

// tcpRun is a failover run of the default lab with three connections through agent1,
// which fails at t0+1s and is back at t0+11s: port 41000 is answered by agent2 (DSR:
// its replies leave agent2) and lives on; 41001 is answered by agent2 and is reset
// (reset) or falls silent (lost) after the fault; 41002 is answered by agent1 itself
// and falls silent (its backend is on the failed node: reported, not failed).
func tcpRun(t *testing.T, ending string, spec ...string) (*Lab, failoverRun) {
	l, err := lab.Load(append(spec, "")[0])
	require.NoError(t, err)
	x := &Lab{Lab: l, Plan: l.Plan}
	client := l.Plan.HostByRole("client").Address
	vip := netip.MustParseAddr("2001:db8:0:101::1")
	t0 := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	run := failoverRun{entry: "agent1", tcpVIP: vip, faultAt: t0.Add(time.Second), restoredAt: t0.Add(11 * time.Second),
		total: 17 * time.Second, caps: map[string]Captured{}}
	seg := func(at time.Duration, fromClient bool, port uint16, flags uint8, payload int) verdict.Packet {
		p := verdict.Packet{Time: t0.Add(at), IPv6: true, Proto: layers.IPProtocolTCP, TCPFlags: flags, Payload: payload, Seq: uint32(at / time.Millisecond)}
		p.Src, p.Dst, p.SrcPort, p.DstPort = client, vip, port, TCPPort
		if !fromClient {
			p.Src, p.Dst, p.SrcPort, p.DstPort = vip, client, TCPPort, port
		}
		return p
	}
	var atClient, agent1, agent2 []verdict.Packet
	for _, port := range []uint16{41000, 41001, 41002} {
		atClient = append(atClient, seg(0, true, port, verdict.TCPSyn, 0))
		answer := &agent2
		if port == 41002 {
			answer = &agent1
		}
		for at := 100 * time.Millisecond; at < 17*time.Second; at += 100 * time.Millisecond {
			req, rep := seg(at, true, port, verdict.TCPAck, 20), seg(at+time.Millisecond, false, port, verdict.TCPAck, 20)
			atClient = append(atClient, req)
			if at <= time.Second {
				agent1 = append(agent1, req)
				*answer = append(*answer, rep)
			}
			switch {
			case port == 41001 && at > time.Second && ending == "reset":
				atClient = append(atClient, seg(at, false, port, verdict.TCPRst, 0))
				at = time.Hour
			case port == 41001 && at > time.Second && ending == "lost", port == 41002 && at > time.Second:
			default:
				atClient = append(atClient, rep)
			}
		}
	}
	run.caps[x.HostLink("client")] = Captured{Packets: atClient}
	run.caps[x.Uplink("agent1")] = Captured{Packets: agent1}
	run.caps[x.Uplink("agent2")] = Captured{Packets: agent2}
	return x, run
}

func TestJudgeTCP(t *testing.T) {
	for ending, kind := range map[string]string{"reset": kindTCPReset, "lost": kindTCPLost} {
		x, run := tcpRun(t, ending)
		r := Result{Pass: true}
		require.NoError(t, judgeTCP(x, failoverFailures[0], run, &r))
		assert.False(t, r.Pass, ending)
		assert.Equal(t, []string{kind}, r.Failures, r.Reason)
		assert.Contains(t, r.Reason, "41001", "names the connection")
		assert.Equal(t, 3.0, r.Figures["tcp_conns_link-down"])
		assert.Equal(t, 2.0, r.Figures["tcp_through_link-down"])
		assert.Equal(t, 1.0, r.Figures["tcp_survived_link-down"])
		assert.Equal(t, 1.0, r.Figures["tcp_backend_on_node_link-down"])
		assert.Equal(t, 0.0, r.Figures["tcp_backend_on_node_survived_link-down"])
	}
}

// In SNAT mode (the tunnel lab) the load balancer promises nothing across a change of
// entry node: a reset is reported, not failed, and every connection that crossed the
// node counts as one (the node that answers is always the entry node).
func TestJudgeTCPWithSNAT(t *testing.T) {
	x, run := tcpRun(t, "reset", "embedded:tunnel")
	r := Result{Pass: true}
	require.NoError(t, judgeTCP(x, failoverFailures[0], run, &r))
	assert.True(t, r.Pass, r.Reason)
	assert.Equal(t, 3.0, r.Figures["tcp_through_link-down"])
	assert.Equal(t, 1.0, r.Figures["tcp_survived_link-down"])
	assert.Equal(t, 1.0, r.Figures["tcp_reset_link-down"])
	assert.NotContains(t, r.Figures, "tcp_backend_on_node_link-down")
}

// Every failure is kept longer than its budget, so that an outage it caused would
// exceed it: a timer's failure (and the control) for longer than the detection time,
// one the routers see at once for seconds beyond its budget — and not for the hold
// time, which only a timer needs.
func TestFailuresOutlastTheirBudgets(t *testing.T) {
	l, err := lab.Load("")
	require.NoError(t, err)
	x := &Lab{Lab: l, Plan: l.Plan}
	hold := bgpHold(x)
	for _, f := range append([]failure{silentDrop}, failoverFailures...) {
		keep, budget := f.keepFor(hold), f.budgetFor(x)
		assert.GreaterOrEqual(t, keep, budget+time.Second, f.name)
		if !f.timed && f.budget == nil {
			assert.Less(t, keep, hold, "%s: the routers see it at once; a timer's hold is not needed", f.name)
		}
	}
}

// The streams run together: only the measured one's packets (its source port) make
// its outage. Port 41000 lost its replies for 1.5 s; 41001, beside it, none.
func TestJudgeOutageOfOneStream(t *testing.T) {
	l, err := lab.Load("")
	require.NoError(t, err)
	x := &Lab{Lab: l, Plan: l.Plan}
	client := l.Plan.HostByRole("client").Address
	vip := netip.MustParseAddr("2001:db8:0:101::2")
	t0 := time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)
	var atClient, entry []verdict.Packet
	for _, port := range []uint16{41000, 41001} {
		for at := time.Duration(0); at < 5*time.Second; at += probeInterval {
			req := verdict.Packet{Time: t0.Add(at), IPv6: true, Proto: layers.IPProtocolUDP, Src: client, Dst: vip, SrcPort: port, DstPort: ProbePort}
			rep := req
			rep.Time, rep.Src, rep.Dst, rep.SrcPort, rep.DstPort = req.Time.Add(time.Millisecond), vip, client, ProbePort, port
			atClient = append(atClient, req)
			entry = append(entry, req)
			if port == 41001 || at < time.Second || at >= 2500*time.Millisecond {
				atClient = append(atClient, rep)
			}
		}
	}
	run := failoverRun{entry: "agent1", vip: vip, faultAt: t0.Add(time.Second), restoredAt: t0.Add(4 * time.Second),
		withdrawn: 80 * time.Millisecond, total: 5 * time.Second, caps: map[string]Captured{
			x.HostLink("client"): {Packets: atClient}, x.Uplink("agent1"): {Packets: entry}}}
	linkDown := failoverFailures[0]
	for port, want := range map[uint16][]string{41000: {kindOutageOverBudget}, 41001: nil} {
		run.port = port
		r := Result{Pass: true}
		measured, err := judgeOutage(x, linkDown, run, 1, &r)
		require.NoError(t, err)
		assert.True(t, measured, "%d", port)
		assert.Equal(t, want, r.Failures, "%d: %s", port, r.Reason)
	}
}
