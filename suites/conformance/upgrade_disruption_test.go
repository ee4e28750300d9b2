package conformance

import (
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"v6lab.dev/v6lab/labs/verdict"
)

// upgradeCapture is one flow's sender-side capture across an upgrade: the rollout
// runs from t0+1s to t0+6s, the probes are stopped at t0+8s. TCP: one connection,
// data every 100 ms each way; ending "reset" resets it at 3 s, "lost" silences the
// server from 3 s on, "stall" silences it from 3 s to 3.4 s only. UDP: a request
// every 10 ms, answered, but not from 3 s to 3 s + gap.
func upgradeCapture(tcp bool, ending string, gap time.Duration) (upFlow, Captured, time.Time, time.Time) {
	t0 := time.Date(2026, 12, 2, 2, 0, 0, 0, time.UTC)
	src := netip.MustParseAddr("2001:db8:0:1::2")
	dst := netip.MustParseAddrPort("[2001:db8:0:101::1]:9001")
	f := upFlow{name: "client->vip tcp", tcp: true, to: dst, src: src}
	var pkts []verdict.Packet
	add := func(at time.Duration, fromSrc bool, proto layers.IPProtocol, flags uint8, payload int) {
		p := verdict.Packet{Time: t0.Add(at), IPv6: true, Proto: proto, TCPFlags: flags, Payload: payload, Seq: uint32(at / time.Millisecond)}
		p.Src, p.Dst, p.SrcPort, p.DstPort = src, dst.Addr(), 41000, dst.Port()
		if !fromSrc {
			p.Src, p.Dst, p.SrcPort, p.DstPort = dst.Addr(), src, dst.Port(), 41000
		}
		p.Index = len(pkts) + 1
		pkts = append(pkts, p)
	}
	silent := func(at time.Duration) bool {
		switch ending {
		case "lost":
			return at >= 3*time.Second
		case "stall", "gap":
			return at >= 3*time.Second && at < 3*time.Second+gap
		}
		return false
	}
	if tcp {
		add(0, true, layers.IPProtocolTCP, verdict.TCPSyn, 0)
		add(time.Millisecond, false, layers.IPProtocolTCP, verdict.TCPSyn|verdict.TCPAck, 0)
		for at := 100 * time.Millisecond; at < 9*time.Second; at += 100 * time.Millisecond {
			add(at, true, layers.IPProtocolTCP, verdict.TCPAck, 20)
			if ending == "reset" && at >= 3*time.Second {
				add(at+time.Millisecond, false, layers.IPProtocolTCP, verdict.TCPRst, 0)
				break
			}
			if !silent(at) {
				add(at+time.Millisecond, false, layers.IPProtocolTCP, verdict.TCPAck, 20)
			}
		}
	} else {
		f = upFlow{name: "client->vip udp", to: netip.AddrPortFrom(dst.Addr(), ProbePort), src: src}
		for at := 10 * time.Millisecond; at < 9*time.Second; at += 10 * time.Millisecond {
			add(at, true, layers.IPProtocolUDP, 0, 40)
			pkts[len(pkts)-1].DstPort = ProbePort
			if !silent(at) {
				add(at+time.Millisecond, false, layers.IPProtocolUDP, 0, 40)
				pkts[len(pkts)-1].SrcPort = ProbePort
			}
		}
	}
	return f, Captured{File: "pcap/upgrade-client.pcapng", Packets: pkts}, t0.Add(8 * time.Second), t0.Add(6 * time.Second)
}

func TestJudgeUpgradeFlow(t *testing.T) {
	for _, c := range []struct {
		name   string
		tcp    bool
		ending string
		gap    time.Duration
		kinds  []string
	}{
		{"tcp survives", true, "", 0, nil},
		{"tcp stalls and survives", true, "stall", 400 * time.Millisecond, nil},
		{"tcp reset", true, "reset", 0, []string{kindConnReset}},
		{"tcp lost", true, "lost", 0, []string{kindConnLost}},
		{"udp within budget", false, "gap", 300 * time.Millisecond, nil},
		{"udp over budget", false, "gap", 1500 * time.Millisecond, []string{kindUDPOutage}},
		{"udp never back", false, "lost", 0, []string{kindUDPOutage}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, capd, stopAt, end := upgradeCapture(c.tcp, c.ending, c.gap)
			r := Result{Pass: true, Reason: "ok", Figures: map[string]float64{}}
			require.NoError(t, judgeUpgradeFlow(f, capd, stopAt, end, time.Second, &r))
			assert.Equal(t, c.kinds, r.Failures, r.Reason)
			assert.Equal(t, len(c.kinds) == 0, r.Pass)
			if c.tcp {
				assert.Equal(t, 1.0, r.Figures["client_to_vip_tcp_conns"], "%v", r.Figures)
			} else if c.ending == "gap" {
				assert.InDelta(t, ms(c.gap), r.Figures["client_to_vip_udp_max_outage_ms"], 20, "%v", r.Figures)
			}
		})
	}
	// A flow that never ran is an error (inconclusive), not a verdict.
	f, capd, stopAt, end := upgradeCapture(true, "", 0)
	capd.Packets = nil
	r := Result{Pass: true, Figures: map[string]float64{}}
	assert.ErrorContains(t, judgeUpgradeFlow(f, capd, stopAt, end, time.Second, &r), "no connection")
}
