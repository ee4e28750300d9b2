package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sync/errgroup"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/hubble"
	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/labs/verdict"
)

// The client reaches every application's VIP over HTTP (new connections) and UDP: every
// request answered, every backend reached, the servers saw the client's own address,
// and at the client every reply comes from the VIP (no backend address leaks, and
// nothing on the client's side translated the VIP away). The applications are probed
// at once, each with its own capture. Control: the first application's Service loses
// its backends (its selector matches no pod), and that application is probed.
func vipReachability() Check {
	return Check{
		Name:         "vip-reachability",
		Concurrent:   withPods,
		ControlGroup: disjointBreaks,
		Applies:      always,
		Breakage:     "the first application's Service selects no pod (its VIP has no backend)",
		Expect:       kindUnanswered,
		Break: func(ctx context.Context, x *Lab) (func(context.Context) error, error) {
			ns := x.Plan.Apps[0].Namespace
			// In effect when every agent's load balancer has the VIP without backends,
			// and restored when each has them all again (never after a fixed sleep).
			setSelector := func(ctx context.Context, app string, backends int) error {
				s, err := x.Client.CoreV1().Services(ns).Get(ctx, EchoName, metav1.GetOptions{})
				if err != nil {
					return err
				}
				s.Spec.Selector = labels(app)
				if _, err = x.Client.CoreV1().Services(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
					return err
				}
				vip, err := x.VIP(ctx, ns, EchoName)
				if err != nil {
					return err
				}
				return x.WaitServiceBackends(ctx, vip, backends, 2*time.Minute)
			}
			restore := func(ctx context.Context) error { return setSelector(ctx, EchoName, len(x.Plan.KubeNodes)) }
			return restore, setSelector(ctx, "nothing", 0)
		},
		Run: func(ctx context.Context, x *Lab, control bool) (Result, error) {
			r := Result{Pass: true, Reason: "ok"}
			client := x.Plan.HostByRole("client")
			// Each application's exchange at once (its own VIP, capture and probes),
			// then each judged in turn.
			type appRun struct {
				vip                         netip.Addr
				pods                        []Pod
				hs                          HTTPSummary
				ps                          ProbeSummary
				caps                        map[string]Captured
				httpStart, udpStart, udpEnd time.Time
			}
			apps := x.Plan.Apps
			if control {
				// The broken application alone: the control runs beside others
				// (ControlGroup) that may break the second's pods.
				apps = apps[:1]
			}
			runs := make([]appRun, len(apps))
			var g errgroup.Group
			for i, app := range apps {
				e := &runs[i]
				g.Go(func() error {
					var err error
					if e.vip, err = x.VIP(ctx, app.Namespace, EchoName); err != nil {
						return err
					}
					if e.pods, err = x.Pods(ctx, app.Namespace, EchoName); err != nil {
						return err
					}
					// Every backend is held to answering: one that is not Ready is an
					// error, never silently left out of "every backend reached".
					if want := len(x.Plan.KubeNodes); !control && len(e.pods) != want {
						return fmt.Errorf("%s: %d of the %d echo backends are Ready", app.Name, len(e.pods), want)
					}
					n := 10 * len(e.pods)
					if control {
						// A VIP without backends answers none: two unanswered requests show
						// it, each waiting out its timeout (30 took 37 s a lab).
						n = 2
					}
					e.caps, err = x.Capture(ctx, "vip-"+app.Name+suffix(control), capture.Filter{IPv6Only: true}, []string{x.HostLink("client")}, func() error {
						var err error
						e.httpStart = time.Now()
						if e.hs, err = x.ProbeHTTP(ctx, client.Name, e.vip, n); err != nil {
							return err
						}
						e.udpStart = time.Now()
						e.ps, err = x.ProbeUDP(ctx, client.Name, netip.AddrPortFrom(e.vip, ProbePort), "--count", "20", "--interval", "10ms", "--wait", "500ms")
						e.udpEnd = time.Now()
						return err
					})
					return err
				})
			}
			if err := g.Wait(); err != nil {
				return r, err
			}
			lbVIPs, err := x.lbVIPs(ctx)
			if err != nil {
				return r, err
			}
			var wire []hubble.Probe
			for i, app := range apps {
				vip, pods, hs, ps, caps := runs[i].vip, runs[i].pods, runs[i].hs, runs[i].ps, runs[i].caps
				httpStart, udpStart, udpEnd := runs[i].httpStart, runs[i].udpStart, runs[i].udpEnd
				r.pcaps(caps)
				c := caps[x.HostLink("client")]
				if hs.OK != hs.Requests || hs.Requests == 0 {
					r.fail(kindUnanswered, "%s: %d of %d HTTP requests to %s answered", app.Name, hs.OK, hs.Requests, vip)
				}
				for _, p := range pods {
					if hs.Hosts[p.Name] == 0 && hs.OK > 0 {
						r.fail(kindBackendUnreached, "%s: backend %s never answered in %d connections", app.Name, p.Name, hs.OK)
					}
				}
				// With DSR the backends see the client itself; SNAT forwarding to a backend on
				// another node shows them the entry node instead (by design), so only DSR
				// labs are held to it.
				preserved := x.Lab.Spec.Spec.LoadBalancer.Mode == spec.LBModeDSR && x.Lab.Spec.Spec.Datapath == spec.DatapathNative
				if preserved {
					// Hubble's account of the HTTP connections and the UDP probes beside
					// the wire's at the client (sent: toward the VIP; delivered: back from
					// it), from every agent (the backends' nodes report the exchange past
					// the translation). Recorded, not judged; only where the backends see
					// the client's address, which is what Hubble reports on the backend's node.
					wire = append(wire,
						vipProbe(app.Name+": the client → its VIP", "TCP", c.Packets, client.Address, netip.AddrPortFrom(vip, HTTPPort), podHTTP, pods, httpStart, udpStart),
						vipProbe(app.Name+": the client → its VIP", "UDP", c.Packets, client.Address, netip.AddrPortFrom(vip, ProbePort), ProbePort, pods, udpStart, udpEnd))
				}
				for cl, n := range hs.Clients {
					if cl == client.Address.String() {
						r.figure("client_preserved_"+app.Name, float64(n))
					} else if preserved {
						r.fail(kindSourceRewritten, "%s: a server saw %s instead of the client's %s", app.Name, cl, client.Address)
					}
				}
				if ps.Received != ps.Sent || ps.Sent == 0 {
					r.fail(kindUnanswered, "%s: %d of %d UDP probes to %s answered", app.Name, ps.Received, ps.Sent, vip)
				}
				for resp := range ps.Responders {
					if resp != vip.String() {
						r.fail(kindReplyNotFromVIP, "%s: UDP replies came from %s, not the VIP", app.Name, resp)
					}
				}
				// At the client: requests go to the VIP, replies come from it.
				// (TCP and UDP only: neighbour discovery with the gateway is not service traffic.)
				// Only the check's own flows (the client's ports that sent to the VIP):
				// a backend of an earlier check's connection, abandoned by its client,
				// goes on retransmitting to it from its own VIP for minutes (a CI run
				// saw two such segments from another VIP here).
				own := ownFlows(c.Packets, client.Address, vip, lbVIPs)
				fromClient, toVIP := 0, 0
				for _, proto := range []string{"tcp", "udp"} {
					v := verdict.Source(own, verdict.Match{Proto: proto, Dst: client.Address}, []netip.Prefix{netip.PrefixFrom(vip, 128)})
					switch {
					case v.Matched == 0:
						r.fail(kindUnanswered, "%s: at the client, no %s reply at all", app.Name, proto)
					case !v.Pass:
						r.fail(kindReplyNotFromVIP, "%s: at the client, %d %s packets toward it did not come from the VIP %s", app.Name, v.Offenders, proto, vip)
						r.Evidence = append(r.Evidence, Evidence(c.File, v.Evidence)...)
					case len(v.Evidence) > 0:
						r.Evidence = append(r.Evidence, Evidence(c.File, v.Evidence[:1])...)
					}
					fromClient += verdict.Source(own, verdict.Match{Proto: proto, Src: client.Address}, nil).Matched
					toVIP += verdict.Source(own, verdict.Match{Proto: proto, Src: client.Address, Dst: vip}, nil).Matched
				}
				if toVIP == 0 || toVIP != fromClient {
					r.fail(kindRequestNotToVIP, "%s: %d of %d packets from the client went to the VIP", app.Name, toVIP, fromClient)
				}
				r.figure("http_ok_"+app.Name, float64(hs.OK))
				r.figure("backends_reached_"+app.Name, float64(len(hs.Hosts)))
			}
			if _, _, err := x.recordHubble(ctx, &r, wire, nil); err != nil {
				return r, err
			}
			return r, nil
		},
	}
}

// ownFlows keeps the packets from and to the client's ports (by protocol) that sent to
// vip, but for those exchanged with another of the lab's VIPs (labVIPs, vip among them
// or not): checks beside this one (Check.Concurrent) send from the client too, and
// one's UDP socket took the port of one of this check's TCP connections (a CI run:
// etp-local's 20 probes to its VIP, and their replies, counted as this check's).
func ownFlows(pkts []verdict.Packet, client, vip netip.Addr, labVIPs []netip.Addr) []verdict.Packet {
	other := func(a netip.Addr) bool { return a != vip && slices.Contains(labVIPs, a) }
	type flow struct {
		proto layers.IPProtocol
		port  uint16
	}
	flows := map[flow]bool{}
	for i := range pkts {
		if p := &pkts[i]; p.Src == client && p.Dst == vip {
			flows[flow{p.Proto, p.SrcPort}] = true
		}
	}
	var out []verdict.Packet
	for i := range pkts {
		p := &pkts[i]
		if (p.Src == client && flows[flow{p.Proto, p.SrcPort}] && !other(p.Dst)) ||
			(p.Dst == client && flows[flow{p.Proto, p.DstPort}] && !other(p.Src)) {
			out = append(out, *p)
		}
	}
	return out
}

// vipProbe is the wire's account of the client's exchange with vip over proto (TCP:
// the HTTP connections, every segment; UDP: the probes), for Hubble's
// (recordHubble): from the client's capture, its packets to the VIP and the VIP's
// back in the window (exchange, tcpExchange). Hubble reports them at the backends
// (at backendPort), past the translation, and on the DSR path often only the reply
// (a request delivered from another node has no flow of its own: seen at 1.20.2):
// its replies count.
func vipProbe(what, proto string, pkts []verdict.Packet, client netip.Addr, vip netip.AddrPort, backendPort uint16, backends []Pod, start, end time.Time) hubble.Probe {
	p := hubble.Probe{What: what + ", " + proto, Src: client, Dst: vip, Proto: proto, Start: start, End: end, Replies: true}
	for _, b := range backends {
		p.Backends = append(p.Backends, netip.AddrPortFrom(b.IP, backendPort))
	}
	if proto == "TCP" {
		p.Sent, p.Delivered = tcpExchange(pkts, client, vip, start, end)
	} else {
		p.Sent, p.Delivered = exchange(pkts, vip, start, end)
	}
	return p
}
