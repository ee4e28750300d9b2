package conformance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
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
	port                uint16 // the measured stream's source port at the client
	faultAt, restoredAt time.Time
	withdrawn           time.Duration
	total               time.Duration // how long the stream ran
	caps                map[string]Captured
}

// tcpConns is how many long-lived TCP connections run beside each stream: with two
// ECMP levels in front of three nodes, at least one crosses a given node but once in
// (3/4)^16 = 1 % of the runs.
const tcpConns = 16

// udpStreams is how many UDP streams start together: each its own socket, so its own
// ECMP path; the first that enters through one node other than the backend's is the
// one measured. Where half the paths lead to the backend's node, one stream alone
// wasted 9 of 15 attempts (~2 s each) in one run of the check; all three streams lead
// there once in eight attempts.
const udpStreams = 3

// failoverOnce runs one stream with the failure; the UDP streams go to the DSR VIP
// (one backend) and the TCP connections to the echo VIP (a backend on every node),
// from the client, captured on the client's link and every node's uplink. The first
// UDP stream (by source port) that entered through one node, not the backend's, that
// the failure can hit is the one measured (run.port); when none did, every stream is
// stopped at once and the run measured nothing (entry "").
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
	hold := bgpHold(x)
	// A second to find the entry node, the failure, and the time after its restore.
	total := f.keepFor(hold) + time.Second + f.after()
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
		var mu sync.Mutex
		var udpErr, tcpErr error
		wg.Add(udpStreams + 1)
		for range udpStreams {
			go func() {
				defer wg.Done()
				_, err := x.ProbeUDP(ctx, client.Name, netip.AddrPortFrom(run.vip, ProbePort), "--interval", probeInterval.String(), "--duration", total.String(), "--wait", "500ms")
				mu.Lock()
				udpErr = errors.Join(udpErr, err)
				mu.Unlock()
			}()
		}
		go func() {
			defer wg.Done()
			var sum TCPSummary
			// A second for the last echoes (an answered echo takes milliseconds): a
			// connection still stalled then has shown whether it survived (data after
			// the restore, five seconds before the end); one whose backend was on the
			// failed node waits no longer.
			sum, tcpErr = x.ProbeTCP(ctx, client.Name, netip.AddrPortFrom(run.tcpVIP, TCPPort), "--conns", fmt.Sprint(tcpConns), "--interval", "100ms", "--duration", total.String(), "--grace", "1s")
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
		// Each stream's entry nodes, by its source port.
		entries := map[uint16][]string{}
		for _, n := range x.Plan.KubeNodes {
			seen := map[uint16]bool{}
			for _, p := range probe[x.Uplink(n.Name)].Packets {
				if p.IPv6 && p.Dst == run.vip && p.Src == client.Address && !seen[p.SrcPort] {
					seen[p.SrcPort] = true
					entries[p.SrcPort] = append(entries[p.SrcPort], n.Name)
				}
			}
		}
		ports := slices.Sorted(maps.Keys(entries))
		n := (*kubeNode)(nil)
		var skips []string
		for _, port := range ports {
			e := entries[port]
			if len(e) != 1 || e[0] == x.DSRNode() {
				continue
			}
			if f.applies != nil {
				if why := f.applies(x, x.node(e[0])); why != "" {
					skips = append(skips, why)
					continue
				}
			}
			n, run.port = x.node(e[0]), port
			break
		}
		if n == nil {
			// Through the backend's node, or two nodes (the routers moved the flow
			// while the entry was captured: a failure of either node would not
			// measure it), or through a node the failure cannot hit (another entry
			// may do).
			slog.Info("failover: no stream entered through one node other than the backend's that the failure can hit; other flows",
				"fault", f.name, "attempt", attempt, "entries", entries, "why", skips)
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
// (client, from port, -> VIP) within three probe intervals before the fault: an outage
// of 0 ms is proven only for a stream that was crossing the faulted node when it failed.
func crossedUntil(pkts []verdict.Packet, client, vip netip.Addr, port uint16, at time.Time) bool {
	req := verdict.Match{Proto: "udp", Src: client, Dst: vip, DstPort: ProbePort}
	for i := range pkts {
		if req.Matches(&pkts[i]) && pkts[i].SrcPort == port && !pkts[i].Time.Before(at.Add(-3*probeInterval)) && !pkts[i].Time.After(at.Add(probeInterval)) {
			return true
		}
	}
	return false
}
