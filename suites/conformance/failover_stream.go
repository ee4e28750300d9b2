package conformance

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/verdict"
)

// failoverRun is one stream with a failure: where it entered, when the failure came and
// went, how long the withdrawal took (-1: none seen), and the captures.
type failoverRun struct {
	entry               string // "": the stream measured nothing about the failure
	vip, tcpVIP         netip.Addr
	faultAt, restoredAt time.Time
	withdrawn           time.Duration
	total               time.Duration // how long the stream ran
	caps                map[string]Captured
}

// tcpConns is how many long-lived TCP connections run beside each stream: with two
// ECMP levels in front of three nodes, at least one crosses a given node but once in
// (3/4)^16 = 1 % of the runs.
const tcpConns = 16

// failoverOnce runs one stream with the failure; the UDP stream goes to the DSR VIP
// (one backend) and the TCP connections to the echo VIP (a backend on every node),
// from the client, captured on the client's link and every node's uplink. A stream
// that entered through the backend's node, through more than one node, or through a
// node the failure cannot hit is stopped at once and measured nothing (entry "").
func failoverOnce(ctx context.Context, x *Lab, f failure, attempt int) (failoverRun, error) {
	run := failoverRun{withdrawn: -1}
	ns := x.Plan.Apps[0].Namespace
	var err error
	if run.vip, err = x.VIP(ctx, ns, DSRSvc); err != nil {
		return run, err
	}
	if run.tcpVIP, err = x.VIP(ctx, ns, EchoName); err != nil {
		return run, err
	}
	client := x.Plan.HostByRole("client")
	hold := time.Duration(x.Lab.Spec.Spec.BGP.HoldSeconds) * time.Second
	total := hold + 8*time.Second
	run.total = total
	name := fmt.Sprintf("failover-%s-%d", f.name, attempt)
	clientPt := x.HostLink("client")
	var uplinks []string
	for _, n := range x.Plan.KubeNodes {
		uplinks = append(uplinks, x.Uplink(n.Name))
	}
	// Both protocols, and both directions, on every point; nothing of IPv4 is expected.
	filter := capture.Filter{IPv6Only: true}
	run.caps, err = x.Capture(ctx, name, filter, append([]string{clientPt}, uplinks...), func() error {
		var wg sync.WaitGroup
		var udpErr, tcpErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, udpErr = x.ProbeUDP(ctx, client.Name, netip.AddrPortFrom(run.vip, ProbePort), "--interval", probeInterval.String(), "--duration", total.String(), "--wait", "500ms")
		}()
		go func() {
			defer wg.Done()
			var sum TCPSummary
			sum, tcpErr = x.ProbeTCP(ctx, client.Name, netip.AddrPortFrom(run.tcpVIP, TCPPort), "--conns", fmt.Sprint(tcpConns), "--interval", "100ms", "--duration", total.String())
			slog.Debug("failover: tcp", "fault", f.name, "summary", sum)
		}()
		wait := func() error {
			wg.Wait()
			if udpErr != nil {
				return udpErr
			}
			return tcpErr
		}
		stop := func() error {
			_, _ = x.Exec(ctx, client.Name, "pkill", "-f", "v6lab-probe (send|tcp)")
			_ = wait()
			return nil
		}
		// The entry node: a short capture on every node's uplink.
		time.Sleep(500 * time.Millisecond)
		probe, err := x.Capture(ctx, name+"-entry", capture.Filter{Proto: "udp", Port: ProbePort}, uplinks, func() error {
			time.Sleep(500 * time.Millisecond)
			return nil
		}, silentOK(uplinks...))
		if err != nil {
			_ = stop()
			return err
		}
		var entries []string
		for _, n := range x.Plan.KubeNodes {
			for _, p := range probe[x.Uplink(n.Name)].Packets {
				if p.IPv6 && p.Dst == run.vip {
					entries = append(entries, n.Name)
					break
				}
			}
		}
		var skip string
		n := (*kubeNode)(nil)
		if len(entries) == 1 && entries[0] != x.DSRNode() {
			n = x.node(entries[0])
		}
		if n != nil && f.applies != nil {
			skip = f.applies(x, n)
		}
		if n == nil || skip != "" {
			// Through two nodes: the routers moved the flow while the entry was
			// captured; a failure of either node would not measure this stream. Or
			// the failure cannot hit this entry node (another entry may do).
			slog.Info("failover: the stream entered through the backend's node, through more than one node, was not seen, or through a node the failure cannot hit; another flow",
				"fault", f.name, "attempt", attempt, "entries", entries, "why", skip)
			return stop()
		}
		run.entry = n.Name
		n.vip = run.vip
		run.faultAt, run.restoredAt, run.withdrawn, err = inject(ctx, x, f, n, hold)
		if err != nil {
			_ = wait()
			return err
		}
		return wait()
	}, silentOK(uplinks...))
	if err != nil {
		run.entry = ""
	}
	return run, err
}

// crossedUntil reports whether the entry node's uplink shows requests of the stream
// (client -> VIP) within three probe intervals before the fault: an outage of 0 ms is
// proven only for a stream that was crossing the faulted node when it failed.
func crossedUntil(pkts []verdict.Packet, client, vip netip.Addr, at time.Time) bool {
	req := verdict.Match{Proto: "udp", Src: client, Dst: vip, DstPort: ProbePort}
	for i := range pkts {
		if req.Matches(&pkts[i]) && !pkts[i].Time.Before(at.Add(-3*probeInterval)) && !pkts[i].Time.After(at.Add(probeInterval)) {
			return true
		}
	}
	return false
}
