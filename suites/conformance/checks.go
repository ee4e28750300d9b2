package conformance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"encoding/json"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/faults"
	"v6lab.dev/v6lab/labs/runtime"
	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/reports"
)

// Result is one run of a check: on the lab as it is, or on the lab broken on purpose.
type Result struct {
	Pass     bool
	Reason   string
	Figures  map[string]float64
	Evidence []reports.Evidence
	Pcaps    []string
	Timeline []reports.Event
}

func (r *Result) fail(format string, a ...any) {
	r.Pass = false
	msg := fmt.Sprintf(format, a...)
	if r.Reason == "" || r.Reason == "ok" {
		r.Reason = msg
	} else {
		r.Reason += "; " + msg
	}
}

func (r *Result) figure(name string, v float64) {
	if r.Figures == nil {
		r.Figures = map[string]float64{}
	}
	r.Figures[name] = v
}

func (r *Result) pcaps(caps map[string]Captured) {
	for _, c := range caps {
		r.Pcaps = append(r.Pcaps, c.File)
	}
	sort.Strings(r.Pcaps)
}

// Check is one conformance check and its negative control.
type Check struct {
	Name string
	// Applies says why the check does not apply to a lab ("" when it does).
	Applies func(x *Lab) string
	// Run judges the lab; control is true when it runs on the broken lab.
	Run func(ctx context.Context, x *Lab, control bool) (Result, error)
	// Breakage says what Break breaks; Break returns what undoes it.
	Breakage string
	Break    func(ctx context.Context, x *Lab) (restore func(context.Context) error, err error)
}

// Checks are the suite's checks, in the order they run: the ones whose controls
// disturb the lab most come last.
func Checks() []Check {
	return []Check{podConnectivity(), bgpRoutes(), etpLocal(), bfdSessions(), guaEgress(), vipReachability(), dsrReturnPath(), failover(), noMasquerade()}
}

func always(*Lab) string { return "" }

// breaksInRun is the Break of checks whose control is a variant of the check's own run
// (another Service, a fault BGP cannot see): there is nothing to break or restore.
func breaksInRun(context.Context, *Lab) (func(context.Context) error, error) {
	return func(context.Context) error { return nil }, nil
}

// podsEgressAsThemselves says why pod egress checks do not apply in tunnel mode.
func podsEgressAsThemselves(x *Lab) string {
	if x.Lab.Spec.Spec.Datapath == spec.DatapathTunnel {
		return "tunnel mode masquerades pod egress to the node address by design (the seed's trade-off): pods do not egress with their GUA"
	}
	return ""
}

// worldAndUplinks are the capture points of pod egress: the world host's link, then
// every node's uplink.
func (x *Lab) worldAndUplinks() []string {
	points := []string{x.HostLink("world")}
	for _, n := range x.Plan.KubeNodes {
		points = append(points, x.Uplink(n.Name))
	}
	return points
}

// --- gua-egress -------------------------------------------------------------------

// A pod of each application talks to the world host; on the nodes' uplinks and at the
// world host the source is the pod's own address, inside its application's /64, and
// the responder echoes it. Control: a pod in the first application drawing its address
// from another application's pool.
func guaEgress() Check {
	const wrongPod = "wrong-pool"
	return Check{
		Name:     "gua-egress",
		Applies:  podsEgressAsThemselves,
		Breakage: "a pod of the first application takes its address from the second application's pool (ipam.cilium.io/ip-pool)",
		Break: func(ctx context.Context, x *Lab) (func(context.Context) error, error) {
			if len(x.Plan.Apps) < 2 {
				return nil, errors.New("the control needs two applications")
			}
			ns, other := x.Plan.Apps[0].Namespace, x.Plan.Apps[1].Name
			d := x.echoDeployment(ns, wrongPod, 1, "")
			d.Spec.Template.Labels = labels(EchoName) // counted among the application's pods
			d.Spec.Selector.MatchLabels = map[string]string{"app": EchoName, "control": wrongPod}
			d.Spec.Template.Labels["control"] = wrongPod
			d.Spec.Template.Annotations = map[string]string{"ipam.cilium.io/ip-pool": other}
			d.Spec.Template.Spec.TopologySpreadConstraints = nil
			restore := func(ctx context.Context) error {
				if err := x.Client.AppsV1().Deployments(ns).Delete(ctx, wrongPod, metav1.DeleteOptions{}); err != nil {
					return err
				}
				return waitPods(ctx, x, ns, EchoName, len(x.Plan.KubeNodes))
			}
			if err := x.apply(ctx, d); err != nil {
				return restore, err
			}
			return restore, waitPods(ctx, x, ns, EchoName, len(x.Plan.KubeNodes)+1)
		},
		Run: func(ctx context.Context, x *Lab, control bool) (Result, error) {
			r := Result{Pass: true, Reason: "ok"}
			if err := x.StartResponder(ctx); err != nil {
				return r, err
			}
			world := x.Plan.HostByRole("world")
			points := x.worldAndUplinks()
			m := verdict.Match{Proto: "udp", DstPort: ProbePort, Dst: world.Address}
			for _, app := range x.Plan.Apps {
				pods, err := x.Pods(ctx, app.Namespace, EchoName)
				if err != nil {
					return r, err
				}
				if len(pods) == 0 {
					return r, fmt.Errorf("%s: no echo pod runs", app.Namespace)
				}
				caps, sums, err := x.podsToWorld(ctx, "gua-egress-"+app.Name+suffix(control), pods, points)
				if err != nil {
					return r, err
				}
				r.pcaps(caps)
				seen := 0
				for _, pt := range points {
					c := caps[pt]
					v := verdict.Source(c.Packets, m, []netip.Prefix{app.PodPool})
					seen += v.Matched
					if v.Matched > 0 && !v.Pass {
						r.fail("%s at %s: %d packets from outside %s", app.Name, pt, v.Offenders, app.PodPool)
						r.Evidence = append(r.Evidence, Evidence(c.File, v.Evidence)...)
					}
				}
				if caps[points[0]].Packets == nil || verdict.Source(caps[points[0]].Packets, m, nil).Matched == 0 {
					r.fail("%s: the world host saw no probe: nothing proven", app.Name)
				}
				for p, s := range sums {
					if s.Received == 0 {
						r.fail("%s: pod %s got no reply from the world host", app.Name, p.Name)
					}
					for src := range s.Observed {
						if src != p.IP.String() {
							r.fail("%s: the world host saw %s for pod %s (%s)", app.Name, src, p.Name, p.IP)
						}
					}
					if !app.PodPool.Contains(p.IP) {
						r.fail("%s: pod %s has %s, outside %s", app.Name, p.Name, p.IP, app.PodPool)
					}
				}
				r.figure("packets_"+app.Name, float64(seen))
			}
			return r, nil
		},
	}
}

// podsToWorld has every pod send probes to the world host while capturing the probes at
// the given points; it returns the captures and each pod's probe summary.
func (x *Lab) podsToWorld(ctx context.Context, check string, pods []Pod, points []string) (map[string]Captured, map[Pod]ProbeSummary, error) {
	world := x.Plan.HostByRole("world")
	sums := map[Pod]ProbeSummary{}
	caps, err := x.Capture(ctx, check, capture.Filter{Proto: "udp", Port: ProbePort}, points, func() error {
		for _, p := range pods {
			out, err := x.PodExec(ctx, p, "v6lab-probe", "send", "--to", netip.AddrPortFrom(world.Address, ProbePort).String(),
				"--count", "10", "--interval", "10ms", "--wait", "300ms")
			if err != nil {
				return err
			}
			var s ProbeSummary
			if err := decodeJSON(out, &s); err != nil {
				return err
			}
			sums[p] = s
		}
		return nil
	})
	return caps, sums, err
}

func suffix(control bool) string {
	if control {
		return "-control"
	}
	return ""
}

func waitPods(ctx context.Context, x *Lab, ns, app string, n int) error {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		pods, err := x.Pods(ctx, ns, app)
		if err == nil && len(pods) == n {
			list, err := x.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
			if err == nil && len(list.Items) == n {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d pods of %s running, want %d (%v)", ns, len(pods), app, n, err)
		}
		time.Sleep(time.Second)
	}
}

// --- no-masquerade ----------------------------------------------------------------

// Every echo pod on every node talks to the world host; no packet leaves any node, or
// arrives at the world host, with a source outside the pod pools. Control: Cilium's own
// IPv6 masquerading switched on (the agents restart with it, then without it again).
func noMasquerade() Check {
	return Check{
		Name:     "no-masquerade",
		Applies:  podsEgressAsThemselves,
		Breakage: "Cilium's IPv6 masquerading enabled (enable-ipv6-masquerade, enable-bpf-masquerade) and the agents restarted",
		Break: func(ctx context.Context, x *Lab) (func(context.Context) error, error) {
			set := func(ctx context.Context, on bool) error {
				cm, err := x.Client.CoreV1().ConfigMaps("kube-system").Get(ctx, "cilium-config", metav1.GetOptions{})
				if err != nil {
					return err
				}
				v := fmt.Sprint(on)
				cm.Data["enable-ipv6-masquerade"] = v
				cm.Data["enable-bpf-masquerade"] = v
				if _, err := x.Client.CoreV1().ConfigMaps("kube-system").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
					return err
				}
				if _, err := x.kubectl(ctx, "", "-n", "kube-system", "rollout", "restart", "daemonset/cilium"); err != nil {
					return err
				}
				if _, err := x.kubectl(ctx, "", "-n", "kube-system", "rollout", "status", "daemonset/cilium", "--timeout=5m"); err != nil {
					return err
				}
				return runtime.WaitReady(ctx, x.Plan, x.Kubeconfig, 5*time.Minute)
			}
			restore := func(ctx context.Context) error { return set(ctx, false) }
			return restore, set(ctx, true)
		},
		Run: func(ctx context.Context, x *Lab, control bool) (Result, error) {
			r := Result{Pass: true, Reason: "ok"}
			if err := x.StartResponder(ctx); err != nil {
				return r, err
			}
			world := x.Plan.HostByRole("world")
			points := x.worldAndUplinks()
			pools := []netip.Prefix{x.Plan.Pods.Block}
			var pods []Pod
			for _, app := range x.Plan.Apps {
				p, err := x.Pods(ctx, app.Namespace, EchoName)
				if err != nil {
					return r, err
				}
				pods = append(pods, p...)
			}
			caps, sums, err := x.podsToWorld(ctx, "no-masquerade"+suffix(control), pods, points)
			if err != nil {
				return r, err
			}
			r.pcaps(caps)
			m := verdict.Match{Proto: "udp", DstPort: ProbePort, Dst: world.Address}
			total := 0
			for _, pt := range points {
				v := verdict.Source(caps[pt].Packets, m, pools)
				total += v.Matched
				if !v.Pass && v.Matched > 0 {
					r.fail("%s: %d of %d packets with a translated source (%v)", pt, v.Offenders, v.Matched, keys(v.Sources))
					r.Evidence = append(r.Evidence, Evidence(caps[pt].File, v.Evidence)...)
				}
			}
			if total == 0 {
				r.fail("no probe captured: nothing proven")
			}
			for p, s := range sums {
				for src := range s.Observed {
					if src != p.IP.String() {
						r.fail("the world host saw %s for pod %s (%s)", src, p.Name, p.IP)
					}
				}
				if s.Received == 0 {
					r.fail("pod %s got no reply", p.Name)
				}
			}
			r.figure("pods", float64(len(pods)))
			r.figure("packets", float64(total))
			return r, nil
		},
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// --- vip-reachability -------------------------------------------------------------

// The client reaches every application's VIP over HTTP (new connections) and UDP: every
// request answered, every backend reached, the servers saw the client's own address,
// and at the client every reply comes from the VIP (no backend address leaks, and
// nothing on the client's side translated the VIP away). Control: the first
// application's Service loses its backends (its selector matches no pod).
func vipReachability() Check {
	return Check{
		Name:     "vip-reachability",
		Applies:  always,
		Breakage: "the first application's Service selects no pod (its VIP has no backend)",
		Break: func(ctx context.Context, x *Lab) (func(context.Context) error, error) {
			ns := x.Plan.Apps[0].Namespace
			setSelector := func(ctx context.Context, app string) error {
				s, err := x.Client.CoreV1().Services(ns).Get(ctx, EchoName, metav1.GetOptions{})
				if err != nil {
					return err
				}
				s.Spec.Selector = labels(app)
				_, err = x.Client.CoreV1().Services(ns).Update(ctx, s, metav1.UpdateOptions{})
				time.Sleep(2 * time.Second) // the agents program the change
				return err
			}
			return func(ctx context.Context) error { return setSelector(ctx, EchoName) }, setSelector(ctx, "nothing")
		},
		Run: func(ctx context.Context, x *Lab, control bool) (Result, error) {
			r := Result{Pass: true, Reason: "ok"}
			client := x.Plan.HostByRole("client")
			for _, app := range x.Plan.Apps {
				vip, err := x.VIP(ctx, app.Namespace, EchoName)
				if err != nil {
					return r, err
				}
				pods, err := x.Pods(ctx, app.Namespace, EchoName)
				if err != nil {
					return r, err
				}
				var hs HTTPSummary
				var ps ProbeSummary
				n := 10 * len(pods)
				caps, err := x.Capture(ctx, "vip-"+app.Name+suffix(control), capture.Filter{IPv6Only: true}, []string{x.HostLink("client")}, func() error {
					var err error
					if hs, err = x.ProbeHTTP(ctx, client.Name, vip, n); err != nil {
						return err
					}
					ps, err = x.ProbeUDP(ctx, client.Name, netip.AddrPortFrom(vip, ProbePort), "--count", "20", "--interval", "10ms", "--wait", "500ms")
					return err
				})
				if err != nil {
					return r, err
				}
				r.pcaps(caps)
				c := caps[x.HostLink("client")]
				if hs.OK != hs.Requests || hs.Requests == 0 {
					r.fail("%s: %d of %d HTTP requests to %s answered", app.Name, hs.OK, hs.Requests, vip)
				}
				for _, p := range pods {
					if hs.Hosts[p.Name] == 0 && hs.OK > 0 {
						r.fail("%s: backend %s never answered in %d connections", app.Name, p.Name, hs.OK)
					}
				}
				// With DSR the backends see the client itself; SNAT forwarding to a backend on
				// another node shows them the entry node instead (by design), so only DSR
				// labs are held to it.
				preserved := x.Lab.Spec.Spec.LoadBalancer.Mode == spec.LBModeDSR && x.Lab.Spec.Spec.Datapath == spec.DatapathNative
				for cl, n := range hs.Clients {
					if cl == client.Address.String() {
						r.figure("client_preserved_"+app.Name, float64(n))
					} else if preserved {
						r.fail("%s: a server saw %s instead of the client's %s", app.Name, cl, client.Address)
					}
				}
				if ps.Received != ps.Sent || ps.Sent == 0 {
					r.fail("%s: %d of %d UDP probes to %s answered", app.Name, ps.Received, ps.Sent, vip)
				}
				for resp := range ps.Responders {
					if resp != vip.String() {
						r.fail("%s: UDP replies came from %s, not the VIP", app.Name, resp)
					}
				}
				// At the client: requests go to the VIP, replies come from it.
				// (TCP and UDP only: neighbour discovery with the gateway is not service traffic.)
				fromClient, toVIP := 0, 0
				for _, proto := range []string{"tcp", "udp"} {
					v := verdict.Source(c.Packets, verdict.Match{Proto: proto, Dst: client.Address}, []netip.Prefix{netip.PrefixFrom(vip, 128)})
					if !v.Pass {
						r.fail("%s: at the client, %d %s packets toward it did not come from the VIP %s", app.Name, v.Offenders, proto, vip)
						r.Evidence = append(r.Evidence, Evidence(c.File, v.Evidence)...)
					} else if len(v.Evidence) > 0 {
						r.Evidence = append(r.Evidence, Evidence(c.File, v.Evidence[:1])...)
					}
					fromClient += verdict.Source(c.Packets, verdict.Match{Proto: proto, Src: client.Address}, nil).Matched
					toVIP += verdict.Source(c.Packets, verdict.Match{Proto: proto, Src: client.Address, Dst: vip}, nil).Matched
				}
				if toVIP == 0 || toVIP != fromClient {
					r.fail("%s: %d of %d packets from the client went to the VIP", app.Name, toVIP, fromClient)
				}
				r.figure("http_ok_"+app.Name, float64(hs.OK))
				r.figure("backends_reached_"+app.Name, float64(len(hs.Hosts)))
			}
			return r, nil
		},
	}
}

// --- dsr-return-path --------------------------------------------------------------

// Connections to a VIP whose only backend runs on node B enter through every node the
// routers spread them to; with DSR the replies (source VIP) leave node B toward the
// client and never pass the node they entered through. Control: the same backend behind
// a Service in SNAT forwarding mode, where replies go back through the entry node.
func dsrReturnPath() Check {
	return Check{
		Name: "dsr-return-path",
		Applies: func(x *Lab) string {
			s := x.Lab.Spec.Spec
			if s.Datapath != spec.DatapathNative {
				return "DSR applies to native routing only (tunnel mode uses SNAT forwarding)"
			}
			if s.LoadBalancer.Mode != spec.LBModeDSR {
				return "the lab's load balancer mode is " + string(s.LoadBalancer.Mode) + ", not dsr"
			}
			return ""
		},
		Breakage: "the backend behind a Service in SNAT forwarding mode (service.cilium.io/forwarding-mode: snat)",
		Break:    breaksInRun,
		Run: func(ctx context.Context, x *Lab, control bool) (Result, error) {
			r := Result{Pass: true, Reason: "ok"}
			ns := x.Plan.Apps[0].Namespace
			svc := DSRSvc
			if control {
				svc = SNATSvc
			}
			vip, err := x.VIP(ctx, ns, svc)
			if err != nil {
				return r, err
			}
			client := x.Plan.HostByRole("client")
			var points []string
			for _, n := range x.Plan.KubeNodes {
				points = append(points, x.Uplink(n.Name))
			}
			var hs HTTPSummary
			caps, err := x.Capture(ctx, "dsr"+suffix(control), capture.Filter{Proto: "tcp", Port: HTTPPort}, points, func() error {
				var err error
				hs, err = x.ProbeHTTP(ctx, client.Name, vip, 40)
				return err
			})
			if err != nil {
				return r, err
			}
			r.pcaps(caps)
			files := map[string][]verdict.Packet{}
			for _, c := range caps {
				files[c.File] = c.Packets
			}
			expect := caps[x.Uplink(x.DSRNode())].File
			v := verdict.ReturnPath(files, vip, client.Address, verdict.Match{Proto: "tcp"}, expect)
			if hs.OK != hs.Requests {
				r.fail("%d of %d connections answered", hs.OK, hs.Requests)
			}
			if !v.Pass {
				r.fail("%s", v.Reason)
			}
			r.Evidence = append(r.Evidence, Evidence("", v.Evidence)...)
			for f, n := range v.Entries {
				r.figure("entered_"+strings.TrimSuffix(lastElem(f), ".pcapng"), float64(n))
			}
			for f, n := range v.Replies {
				r.figure("replies_"+strings.TrimSuffix(lastElem(f), ".pcapng"), float64(n))
			}
			return r, nil
		},
	}
}

func lastElem(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[i+1:]
	}
	return p
}

// routeVia reports whether a `show bgp ipv6 unicast PREFIX json` document has a path
// learned from, or through, addr.
func routeVia(doc []byte, addr netip.Addr) bool {
	var d struct {
		Paths []struct {
			Peer struct {
				PeerID string `json:"peerId"`
			} `json:"peer"`
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
		} `json:"paths"`
	}
	if json.Unmarshal(doc, &d) != nil {
		return true // unreadable: not withdrawn as far as we know
	}
	for _, p := range d.Paths {
		if a, err := netip.ParseAddr(p.Peer.PeerID); err == nil && a == addr {
			return true
		}
		for _, n := range p.Nexthops {
			if a, err := netip.ParseAddr(n.IP); err == nil && a == addr {
				return true
			}
		}
	}
	return false
}

// --- failover ---------------------------------------------------------------------

// A UDP probe stream from the client to a VIP runs while the router link of the node it
// enters through goes down; the outage (from the replies' timestamps at the client) must
// stay within the failure detection time the spec configures (BGP hold time, or BFD's).
// The control is a failure BGP cannot see: the same link silently drops the probes while
// its BGP session stays up; the outage lasts as long as the failure and the check fails.
func failover() Check {
	return Check{
		Name:     "failover",
		Applies:  always,
		Breakage: "the entry node's router link drops the probe stream while BGP stays up (a failure only BFD-like detection would see), for longer than the detection time",
		Break:    breaksInRun,
		Run:      runFailover,
	}
}

// fault is one failure the failover check injects on the stream's entry node; it
// returns when the failure was injected and when it was undone, and how long the
// node's router took to withdraw the VIP's path through the node (-1: not measured).
type fault struct {
	name   string
	inject func(ctx context.Context, x *Lab, n *kubeNode, hold time.Duration) (at, restored time.Time, withdrawn time.Duration, err error)
	// timed: only a timer (BFD's or BGP's hold timer) finds this failure, so one
	// outage spreads by itself over the timer's interval (see detectionSpread).
	timed bool
}

// failoverFaults are the failures of the check: (c) the node's router link goes down,
// (b) the node's BGP session is shut on its router, (a) the node stops (frozen, and its
// link silent without going down: only BFD or the hold timer finds out).
var failoverFaults = []fault{
	{"link-down", func(ctx context.Context, x *Lab, n *kubeNode, hold time.Duration) (time.Time, time.Time, time.Duration, error) {
		return around(ctx, x, n, hold,
			func(ctx context.Context) error {
				_, err := x.Exec(ctx, n.Router, "ip", "link", "set", n.RouterIface, "down")
				return err
			},
			func(ctx context.Context) error {
				_, err := x.Exec(ctx, n.Router, "ip", "link", "set", n.RouterIface, "up")
				return err
			})
	}, false},
	{"session-down", func(ctx context.Context, x *Lab, n *kubeNode, hold time.Duration) (time.Time, time.Time, time.Duration, error) {
		vty := func(ctx context.Context, cmd string) error {
			_, err := x.Exec(ctx, n.Router, "vtysh", "-c", "configure terminal", "-c", "router bgp "+fmt.Sprint(n.RouterASN), "-c", cmd)
			return err
		}
		return around(ctx, x, n, hold,
			func(ctx context.Context) error { return vty(ctx, "neighbor "+n.Announcer.String()+" shutdown") },
			func(ctx context.Context) error { return vty(ctx, "no neighbor "+n.Announcer.String()+" shutdown") })
	}, false},
	{"node-stopped", func(ctx context.Context, x *Lab, n *kubeNode, hold time.Duration) (time.Time, time.Time, time.Duration, error) {
		// A node that dies without its link going down: its processes frozen, and
		// nothing in or out of its link any more (a frozen container's kernel datapath
		// would go on forwarding). Only BFD or the hold timer can find out.
		c := x.Plan.ContainerName(n.Name)
		rules := faults.Blackhole("v6lab_nodestop", n.RouterIface)
		return around(ctx, x, n, hold,
			func(ctx context.Context) error {
				if _, err := x.ExecStdin(ctx, n.Router, rules, "nft", "-f", "-"); err != nil {
					return err
				}
				_, err := run(ctx, "docker", []string{"pause", c}, "")
				return err
			},
			func(ctx context.Context) error {
				_, err := run(ctx, "docker", []string{"unpause", c}, "")
				if _, derr := x.Exec(ctx, n.Router, faults.Remove("v6lab_nodestop")...); err == nil {
					err = derr
				}
				return err
			})
	}, true},
}

// around injects a failure, measures the withdrawal at the node's router, keeps the
// failure for the detection time plus two seconds, and undoes it — always: a failed
// or half-done injection, and an interrupted run (ctx cancelled), are undone too, on a
// context of their own.
func around(ctx context.Context, x *Lab, n *kubeNode, hold time.Duration, do, undo func(context.Context) error) (time.Time, time.Time, time.Duration, error) {
	undoAlways := func() error {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		return undo(uctx)
	}
	if err := do(ctx); err != nil {
		_ = undoAlways()
		return time.Time{}, time.Time{}, -1, err
	}
	at := time.Now()
	keep := hold + 2*time.Second
	withdrawn := waitWithdrawn(ctx, x, n.Router, n.vip, n.Announcer, keep)
	if rest := keep - time.Since(at); rest > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(rest):
		}
	}
	err := undoAlways()
	if err == nil {
		err = ctx.Err()
	}
	return at, time.Now(), withdrawn, err
}

// probeInterval is the failover stream's: one probe per 10 ms.
const probeInterval = 10 * time.Millisecond

// detectionSpread is how far one timer-detected outage lies from another by itself: the
// failure falls anywhere between two of the peer's packets, so detection comes between
// (multiplier-1) and multiplier BFD receive intervals after it, or between hold minus
// keepalive and hold seconds. v6lab compare widens its tolerance by it.
func detectionSpread(x *Lab) time.Duration {
	b := x.Lab.Spec.Spec.BGP
	if b.BFD.Enabled {
		return time.Duration(b.BFD.ReceiveIntervalMs) * time.Millisecond
	}
	if b.KeepaliveSeconds > 0 {
		return time.Duration(b.KeepaliveSeconds) * time.Second
	}
	return time.Duration(b.HoldSeconds) * time.Second / 3
}

// threshold is the longest outage the spec's failure detection allows: BFD's detection
// time, or the BGP hold time, plus a second for the routers to converge.
func threshold(x *Lab) time.Duration {
	b := x.Lab.Spec.Spec.BGP
	if b.BFD.Enabled {
		return time.Duration(b.BFD.DetectMultiplier*b.BFD.ReceiveIntervalMs)*time.Millisecond + time.Second
	}
	return time.Duration(b.HoldSeconds)*time.Second + time.Second
}

// The control: the link to the entry node drops the stream while BGP stays up.
var silentDrop = fault{"silent-drop", func(ctx context.Context, x *Lab, n *kubeNode, hold time.Duration) (time.Time, time.Time, time.Duration, error) {
	rules := fmt.Sprintf("add table inet v6lab_negative\nadd chain inet v6lab_negative forward_c { type filter hook forward priority -300; }\nadd rule inet v6lab_negative forward_c oifname %s udp dport %d drop\n", n.RouterIface, ProbePort)
	remove := func() error {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_, err := x.Exec(uctx, n.Router, faults.Remove("v6lab_negative")...)
		return err
	}
	if _, err := x.ExecStdin(ctx, n.Router, rules, "nft", "-f", "-"); err != nil {
		_ = remove()
		return time.Time{}, time.Time{}, -1, err
	}
	at := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(hold + 3*time.Second):
	}
	err := remove()
	if err == nil {
		err = ctx.Err()
	}
	return at, time.Now(), -1, err
}, false}

func runFailover(ctx context.Context, x *Lab, control bool) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	limit := threshold(x)
	r.figure("threshold_ms", float64(limit.Milliseconds()))
	faults := failoverFaults
	if control {
		faults = []fault{silentDrop}
	}
	vip, err := x.VIP(ctx, x.Plan.Apps[0].Namespace, DSRSvc)
	if err != nil {
		return r, err
	}
	whole, err := vipRoutes(ctx, x, vip)
	if err != nil {
		return r, err
	}
	for _, f := range faults {
		if err := measureFault(ctx, x, f, limit, &r); err != nil {
			return r, fmt.Errorf("%s: %w", f.name, err)
		}
		// The lab is whole again before the next failure: sessions up, and every
		// router's paths toward the VIP what they were (a path that comes back moves
		// flows between the nodes: a stream measured meanwhile may leave the node
		// the fault is injected on).
		if err := runtime.WaitReady(ctx, x.Plan, x.Kubeconfig, 5*time.Minute); err != nil {
			return r, fmt.Errorf("after %s: %w", f.name, err)
		}
		if err := waitPaths(ctx, x, vip, whole, 2*time.Minute); err != nil {
			return r, fmt.Errorf("after %s: %w", f.name, err)
		}
	}
	return r, nil
}

// vipRoutes is every router's BGP route toward a VIP (vtysh JSON), by router.
func vipRoutes(ctx context.Context, x *Lab, vip netip.Addr) (map[string]runtime.Route, error) {
	st, err := runtime.GetStatus(ctx, x.Plan)
	if err != nil {
		return nil, err
	}
	want := netip.PrefixFrom(vip, 128).String()
	routes := map[string]runtime.Route{}
	for _, rt := range st.Routes {
		if rt.Prefix == want {
			routes[rt.Router] = rt
		}
	}
	return routes, nil
}

// waitPaths waits until every router's next hops toward the VIP are those of want.
func waitPaths(ctx context.Context, x *Lab, vip netip.Addr, want map[string]runtime.Route, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got, err := vipRoutes(ctx, x, vip)
		var diff []string
		for router, rt := range want {
			if !slices.Equal(got[router].NextHops, rt.NextHops) {
				diff = append(diff, fmt.Sprintf("%s via %v, was %v", router, got[router].NextHops, rt.NextHops))
			}
		}
		if err == nil && len(diff) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the routers' paths toward %s did not come back within %s: %s (%v)", vip, timeout, strings.Join(diff, "; "), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// measureFault runs probe streams until one enters through a node other than the
// backend's (new streams pick new source ports, hence new ECMP paths), injects the
// failure on that node, and adds the outage to r. A stream seen through two nodes, or
// one a stopped node cost nothing, left its node: another stream is tried.
func measureFault(ctx context.Context, x *Lab, f fault, limit time.Duration, r *Result) error {
	// A stream that enters through the backend's node costs ~2 s; where half the paths
	// lead there (one leaf serves only that node), 16 of them in a row happen once in
	// 65,536 faults.
	const maxAttempts = 16
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		entry, out, err := failoverOnce(ctx, x, f, limit, attempt, r)
		if err != nil {
			return err
		}
		if entry == "" {
			continue
		}
		r.figure("attempts_"+f.name, float64(attempt))
		if out > float64(limit.Milliseconds()) {
			r.fail("%s of %s: outage %.0f ms exceeds the %s the spec's detection allows", f.name, entry, out, limit)
		}
		return nil
	}
	return fmt.Errorf("none of %d probe streams entered through one node other than the backend's and stayed on it: no failover to measure", maxAttempts)
}

func failoverOnce(ctx context.Context, x *Lab, f fault, limit time.Duration, attempt int, r *Result) (string, float64, error) {
	ns := x.Plan.Apps[0].Namespace
	vip, err := x.VIP(ctx, ns, DSRSvc)
	if err != nil {
		return "", 0, err
	}
	client := x.Plan.HostByRole("client")
	hold := time.Duration(x.Lab.Spec.Spec.BGP.HoldSeconds) * time.Second
	total := hold + 8*time.Second
	name := fmt.Sprintf("failover-%s-%d", f.name, attempt)
	clientPt := x.HostLink("client")
	var entry string
	var faultAt, restoredAt time.Time
	var sum ProbeSummary
	withdrawn := time.Duration(-1)
	caps, err := x.Capture(ctx, name, capture.Filter{Proto: "udp", Port: ProbePort}, []string{clientPt}, func() error {
		done := make(chan error, 1)
		go func() {
			var err error
			sum, err = x.ProbeUDP(ctx, client.Name, netip.AddrPortFrom(vip, ProbePort), "--interval", probeInterval.String(), "--duration", total.String(), "--wait", "500ms")
			done <- err
		}()
		// The entry node: a short capture on every node's uplink.
		var points []string
		for _, n := range x.Plan.KubeNodes {
			points = append(points, x.Uplink(n.Name))
		}
		time.Sleep(500 * time.Millisecond)
		probe, err := x.Capture(ctx, name+"-entry", capture.Filter{Proto: "udp", Port: ProbePort}, points, func() error {
			time.Sleep(500 * time.Millisecond)
			return nil
		})
		if err != nil {
			<-done
			return err
		}
		var entries []string
		for _, n := range x.Plan.KubeNodes {
			for _, p := range probe[x.Uplink(n.Name)].Packets {
				if p.IPv6 && p.Dst == vip {
					entries = append(entries, n.Name)
					break
				}
			}
		}
		if len(entries) == 1 {
			entry = entries[0]
		}
		if entry == "" || entry == x.DSRNode() {
			// Through two nodes: the routers moved the flow while the entry was
			// captured; a fault on either node would not measure this stream.
			slog.Info("failover: the stream entered through the backend's node, through more than one node, or was not seen; another flow", "fault", f.name, "attempt", attempt, "entries", entries)
			entry = ""
			_, _ = x.Exec(ctx, client.Name, "pkill", "-f", "v6lab-probe send")
			<-done
			return nil
		}
		n := x.node(entry)
		n.vip = vip
		faultAt, restoredAt, withdrawn, err = f.inject(ctx, x, n, hold)
		if err != nil {
			<-done
			return err
		}
		return <-done
	})
	if err != nil || entry == "" {
		return "", 0, err
	}
	r.pcaps(caps)
	c := caps[clientPt]
	v := verdict.Outage(c.Packets, verdict.Match{Proto: "udp", Src: vip, Dst: client.Address}, 0, 0)
	var worst verdict.Window
	for _, w := range v.Windows {
		if w.DurationMs > worst.DurationMs {
			worst = w
		}
	}
	if f.timed && v.Packets > 0 && len(v.Windows) == 0 {
		// A node stopped under the stream loses probes until a timer finds it; none
		// lost means the routers moved the stream off that node before the fault
		// (seen once: the flow left the node while the entry was captured), so this
		// stream measured nothing.
		slog.Info("failover: the stream lost nothing when its entry node stopped: it no longer crossed that node; another flow", "fault", f.name, "attempt", attempt, "entry", entry)
		return "", 0, nil
	}
	r.figure("outage_ms_"+f.name, worst.DurationMs)
	r.figure("lost_"+f.name, float64(sum.Sent-sum.Received))
	switch {
	case f.timed: // the timer's spread: the outage's, the withdrawal's, the lost probes'
		spread := detectionSpread(x)
		r.figure(reports.SpreadPrefix+f.name, float64(spread.Milliseconds()))
		r.figure(reports.SpreadLostPrefix+f.name, float64(spread/probeInterval))
	case withdrawn >= 0:
		// Seen at once by the routers: the stream may have had another way at the
		// node's router (no outage) or none until the withdrawal reached the routers
		// upstream, so one outage lies between 0 and about the withdrawal time of the
		// same run, measured at the node's router (link-down: outages of 0, 0, 68 and
		// 106 ms, withdrawals 80-85 ms; compare adds its 100 ms for the rest). The
		// withdrawal time itself keeps the plain tolerance.
		r.figure(reports.SpreadOf("outage_ms_"+f.name), float64(withdrawn.Milliseconds()))
		r.figure(reports.SpreadLostPrefix+f.name, float64(withdrawn/probeInterval))
	}
	if withdrawn >= 0 {
		r.figure("withdraw_ms_"+f.name, float64(withdrawn.Milliseconds()))
	}
	r.Timeline = append(r.Timeline, reports.Event{At: faultAt, Label: f.name + ": " + entry, Until: restoredAt})
	for _, w := range v.Windows {
		r.Timeline = append(r.Timeline, reports.Event{At: w.Start, Label: fmt.Sprintf("no replies (%.0f ms)", w.DurationMs), Until: w.End})
	}
	if v.Packets == 0 {
		r.fail("%s: no reply captured at the client: nothing measured", f.name)
	}
	r.Evidence = append(r.Evidence, reports.Evidence{File: c.File, Time: faultAt,
		Note: fmt.Sprintf("%s on %s; %d loss windows; longest %.0f ms", f.name, entry, len(v.Windows), worst.DurationMs)})
	return entry, worst.DurationMs, nil
}

// kubeNode is what a fault needs of a node.
type kubeNode struct {
	Name, Router, RouterIface string
	RouterASN                 uint32
	Address                   netip.Addr
	Announcer                 netip.Addr // the address the VIPs are announced from
	vip                       netip.Addr
}

// announcer is the address a node announces VIPs from: its node-ip (Cilium's BGP), or
// its speaker address (MetalLB).
func (x *Lab) announcer(node string) netip.Addr {
	for _, n := range x.Plan.KubeNodes {
		if n.Name == node {
			if x.Lab.Spec.Spec.LoadBalancer.Announcer == spec.AnnouncerMetalLB {
				return n.SpeakerAddress
			}
			return n.Address
		}
	}
	return netip.Addr{}
}

func (x *Lab) node(name string) *kubeNode {
	for _, n := range x.Plan.KubeNodes {
		if n.Name == name {
			return &kubeNode{Name: n.Name, Router: n.Router, RouterIface: n.RouterIface, RouterASN: n.RouterASN,
				Address: n.Address, Announcer: x.announcer(n.Name)}
		}
	}
	return nil
}

// waitWithdrawn polls the router (vtysh JSON) until its route to the VIP no longer goes
// through the node; it returns how long that took (-1: not within limit).
func waitWithdrawn(ctx context.Context, x *Lab, router string, vip, node netip.Addr, limit time.Duration) time.Duration {
	start := time.Now()
	for time.Since(start) < limit {
		out, err := x.Exec(ctx, router, "vtysh", "-c", fmt.Sprintf("show bgp ipv6 unicast %s/128 json", vip))
		if err == nil && !routeVia([]byte(out), node) {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return -1
}

// --- bgp-routes -------------------------------------------------------------------

// The routers learn what the cluster announces (vtysh JSON): every leaf holds each of
// the workload's VIPs with every node attached to it as a next hop, the edge holds
// each VIP, and (native routing) the edge holds a route covering every pod's address,
// inside its application's pool. Control: the cluster's BGP advertisement removed.
func bgpRoutes() Check {
	var saved string
	return Check{
		Name:     "bgp-routes",
		Applies:  always,
		Breakage: "the BGP advertisements removed (Cilium's, and MetalLB's when it announces): the nodes withdraw pod pools and VIPs",
		Break: func(ctx context.Context, x *Lab) (func(context.Context) error, error) {
			if x.Lab.Spec.Spec.LoadBalancer.Announcer != spec.AnnouncerCiliumBGP && x.Lab.Spec.Spec.Datapath != spec.DatapathNative {
				return nil, errors.New("nothing to withdraw: the cluster announces neither VIPs nor pod pools")
			}
			var ns []string // Cilium's advertisements are cluster-scoped
			kind := "ciliumbgpadvertisements.cilium.io"
			if x.Lab.Spec.Spec.LoadBalancer.Announcer == spec.AnnouncerMetalLB {
				// MetalLB announces the VIPs: withdraw its advertisement (and Cilium's, the
				// pod pools) — every route the check looks for goes.
				kind = "ciliumbgpadvertisements.cilium.io,bgpadvertisements.metallb.io"
				ns = []string{"-n", "metallb-system"}
			}
			out, err := x.kubectl(ctx, "", append(ns, "get", kind, "-o", "json")...)
			if err != nil {
				return nil, err
			}
			saved = stripServerFields(out)
			restore := func(ctx context.Context) error {
				if _, err := x.kubectl(ctx, saved, append(ns, "apply", "-f", "-")...); err != nil {
					return err
				}
				// Back only when the routers have the routes again.
				return restored(ctx, x, "the routes", routesOnce)
			}
			_, err = x.kubectl(ctx, "", append(ns, "delete", kind, "--all")...)
			return restore, err
		},
		Run: func(ctx context.Context, x *Lab, control bool) (Result, error) {
			return settle(ctx, x, control, routesOnce)
		},
	}
}

// settle polls a state check (routes, BFD: they converge after a change) until it gives
// the verdict the lab settles on — a pass, or for a control a failure — for at most 30 s.
func settle(ctx context.Context, x *Lab, control bool, once func(context.Context, *Lab) (Result, error)) (Result, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := once(ctx, x)
		if err != nil || r.Pass != control || time.Now().After(deadline) {
			return r, err
		}
		time.Sleep(time.Second)
	}
}

// restored waits, for at most a minute, until a state check passes again after a
// control restored the lab.
func restored(ctx context.Context, x *Lab, what string, once func(context.Context, *Lab) (Result, error)) error {
	deadline := time.Now().Add(time.Minute)
	for {
		r, err := once(ctx, x)
		if err == nil && r.Pass {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not back a minute after the restore: %s (%v)", what, r.Reason, err)
		}
		time.Sleep(time.Second)
	}
}

func routesOnce(ctx context.Context, x *Lab) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	st, err := runtime.GetStatus(ctx, x.Plan)
	if err != nil {
		return r, err
	}
	routes := map[string][]runtime.Route{}
	for _, rt := range st.Routes {
		routes[rt.Router] = append(routes[rt.Router], rt)
	}
	find := func(router string, a netip.Addr) (runtime.Route, bool) {
		best, bits := runtime.Route{}, -1
		for _, rt := range routes[router] {
			p, err := netip.ParsePrefix(rt.Prefix)
			if err == nil && p.Contains(a) && p.Bits() > bits {
				best, bits = rt, p.Bits()
			}
		}
		return best, bits >= 0
	}
	var vips []netip.Addr
	first := x.Plan.Apps[0].Namespace
	for _, app := range x.Plan.Apps {
		if v, err := x.VIP(ctx, app.Namespace, EchoName); err == nil {
			vips = append(vips, v)
		}
	}
	if v, err := x.VIP(ctx, first, DSRSvc); err == nil {
		vips = append(vips, v)
	}
	if len(vips) == 0 {
		return r, errors.New("the workload has no VIP")
	}
	edge := ""
	for _, rt := range x.Plan.Routers {
		if rt.Role == spec.RoleEdge {
			edge = rt.Name
		}
	}
	checked := 0
	for _, vip := range vips {
		for _, rt := range x.Plan.Routers {
			route, ok := find(rt.Name, vip)
			if !ok || route.Prefix != netip.PrefixFrom(vip, 128).String() {
				r.fail("%s has no route for VIP %s", rt.Name, vip)
				continue
			}
			checked++
			for _, n := range x.Plan.KubeNodes {
				if n.Router != rt.Name {
					continue
				}
				hop := x.announcer(n.Name)
				if !hasHop(route.NextHops, hop) {
					r.fail("%s's route for %s does not go through %s (%s): %v", rt.Name, vip, n.Name, hop, route.NextHops)
				}
			}
			if rt.Name == edge {
				r.Evidence = append(r.Evidence, reports.Evidence{Note: fmt.Sprintf("%s: %s via %v (AS path %s)", rt.Name, route.Prefix, route.NextHops, route.ASPath)})
			}
		}
	}
	if x.Lab.Spec.Spec.Datapath == spec.DatapathNative && edge != "" {
		for _, app := range x.Plan.Apps {
			pods, err := x.Pods(ctx, app.Namespace, EchoName)
			if err != nil {
				return r, err
			}
			for _, p := range pods {
				route, ok := find(edge, p.IP)
				pfx, _ := netip.ParsePrefix(route.Prefix)
				switch {
				case !ok:
					r.fail("%s has no route for pod %s (%s)", edge, p.Name, p.IP)
				case !app.PodPool.Contains(pfx.Addr()) || pfx.Bits() < app.PodPool.Bits():
					r.fail("%s reaches pod %s through %s, not a slice of %s", edge, p.IP, route.Prefix, app.PodPool)
				default:
					checked++
				}
			}
		}
	}
	r.figure("routes_checked", float64(checked))
	r.figure("routes_learned", float64(len(st.Routes)))
	return r, nil
}

func hasHop(hops []string, a netip.Addr) bool {
	for _, h := range hops {
		h, _, _ = strings.Cut(h, "%")
		if ha, err := netip.ParseAddr(h); err == nil && ha == a {
			return true
		}
	}
	return false
}

// stripServerFields turns `kubectl get -o json` output into a document kubectl apply
// can create again.
func stripServerFields(doc string) string {
	var list struct {
		APIVersion string           `json:"apiVersion"`
		Kind       string           `json:"kind"`
		Items      []map[string]any `json:"items"`
	}
	if json.Unmarshal([]byte(doc), &list) != nil {
		return doc
	}
	for _, it := range list.Items {
		if md, ok := it["metadata"].(map[string]any); ok {
			for _, k := range []string{"resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"} {
				delete(md, k)
			}
		}
		delete(it, "status")
	}
	out, err := json.Marshal(list)
	if err != nil {
		return doc
	}
	return string(out)
}

// --- pod-connectivity -------------------------------------------------------------

// Every echo pod reaches a pod of another application on another node, and the world
// host; every probe is answered (the capture at the world host holds the requests, the
// nodes' uplinks the pod-to-pod ones).
// Control: a NetworkPolicy that denies all ingress in the second application.
func podConnectivity() Check {
	return Check{
		Name:     "pod-connectivity",
		Applies:  always,
		Breakage: "a NetworkPolicy denying all ingress in the second application's namespace",
		Break: func(ctx context.Context, x *Lab) (func(context.Context) error, error) {
			ns := x.Plan.Apps[len(x.Plan.Apps)-1].Namespace
			np := &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: "v6lab-deny-all", Namespace: ns},
				Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
			}
			restore := func(ctx context.Context) error {
				err := x.Client.NetworkingV1().NetworkPolicies(ns).Delete(ctx, np.Name, metav1.DeleteOptions{})
				time.Sleep(2 * time.Second)
				return err
			}
			if _, err := x.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
				return nil, err
			}
			time.Sleep(3 * time.Second) // the agents compute and load the policy
			return restore, nil
		},
		Run: func(ctx context.Context, x *Lab, control bool) (Result, error) {
			r := Result{Pass: true, Reason: "ok"}
			if err := x.StartResponder(ctx); err != nil {
				return r, err
			}
			if len(x.Plan.Apps) < 2 {
				return r, errors.New("pod-connectivity needs two applications")
			}
			a, err := x.Pods(ctx, x.Plan.Apps[0].Namespace, EchoName)
			if err != nil {
				return r, err
			}
			b, err := x.Pods(ctx, x.Plan.Apps[len(x.Plan.Apps)-1].Namespace, EchoName)
			if err != nil {
				return r, err
			}
			world := x.Plan.HostByRole("world")
			pairs, answered := 0, 0
			// The nodes' uplinks hold the pod-to-pod probes as evidence (natively
			// routed, or inside VXLAN) when a pair goes unanswered.
			caps, err := x.Capture(ctx, "pod-connectivity"+suffix(control), capture.Filter{IPv6Only: true}, x.worldAndUplinks(), func() error {
				for _, from := range a {
					targets := []netip.AddrPort{netip.AddrPortFrom(world.Address, ProbePort)}
					for _, to := range b {
						if to.Node != from.Node {
							targets = append(targets, netip.AddrPortFrom(to.IP, ProbePort))
							break
						}
					}
					for _, to := range targets {
						out, err := x.PodExec(ctx, from, "v6lab-probe", "send", "--to", to.String(), "--count", "5", "--interval", "10ms", "--wait", "300ms")
						var s ProbeSummary
						if jerr := decodeJSON(out, &s); jerr != nil {
							return fmt.Errorf("%s -> %s: %w (%v)", from.Name, to, jerr, err)
						}
						pairs++
						if s.Received == s.Sent && s.Sent > 0 {
							answered++
						} else {
							r.fail("%s (%s, %s) -> %s: %d of %d answered", from.Name, from.IP, from.Node, to, s.Received, s.Sent)
						}
					}
				}
				return nil
			})
			if err != nil {
				return r, err
			}
			r.pcaps(caps)
			toWorld := verdict.Source(caps[x.HostLink("world")].Packets, verdict.Match{Proto: "udp", Dst: world.Address, DstPort: ProbePort}, nil)
			if toWorld.Matched == 0 {
				r.fail("the world host saw no probe")
			}
			r.figure("pairs", float64(pairs))
			r.figure("answered", float64(answered))
			return r, nil
		},
	}
}

// --- etp-local --------------------------------------------------------------------

// A Service with externalTrafficPolicy Local whose only backend runs on one node is
// announced from that node alone: every router's route to its VIP goes only through
// that node (or, away from its leaf, toward it), and the client reaches it. Control:
// the same backend behind an externalTrafficPolicy Cluster Service, announced by every
// node.
func etpLocal() Check {
	return Check{
		Name:     "etp-local",
		Applies:  always,
		Breakage: "the same backend behind a Service with externalTrafficPolicy Cluster (every node announces it)",
		Break:    breaksInRun,
		Run: func(ctx context.Context, x *Lab, control bool) (Result, error) {
			svc := LocalSvc
			if control {
				svc = DSRSvc
			}
			ns := x.Plan.Apps[0].Namespace
			vip, err := x.VIP(ctx, ns, svc)
			if err != nil {
				return Result{}, err
			}
			backend := x.DSRNode()
			var r Result
			// Announcements converge: poll until the expected verdict, at most 30 s.
			deadline := time.Now().Add(30 * time.Second)
			for {
				r = Result{Pass: true, Reason: "ok"}
				routes, err := vipRoutes(ctx, x, vip)
				if err != nil {
					return r, err
				}
				want := netip.PrefixFrom(vip, 128).String()
				for _, n := range x.Plan.KubeNodes {
					route, found := routes[n.Router]
					hop := x.announcer(n.Name)
					switch {
					case n.Name == backend && (!found || !hasHop(route.NextHops, hop)):
						r.fail("%s has no route for %s through the backend's node %s (%s)", n.Router, vip, n.Name, hop)
					case n.Name != backend && found && hasHop(route.NextHops, hop):
						r.fail("%s routes %s through %s (%s), which has no backend", n.Router, vip, n.Name, hop)
					}
					if found {
						r.Evidence = append(r.Evidence, reports.Evidence{Note: fmt.Sprintf("%s: %s via %v", n.Router, want, route.NextHops)})
					}
				}
				if r.Pass != control || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Second)
			}
			client := x.Plan.HostByRole("client")
			s, err := x.ProbeUDP(ctx, client.Name, netip.AddrPortFrom(vip, ProbePort), "--count", "10", "--interval", "10ms", "--wait", "300ms")
			if err != nil {
				return r, err
			}
			if s.Received != s.Sent || s.Sent == 0 {
				r.fail("%d of %d probes to %s answered", s.Received, s.Sent, vip)
			}
			for src := range s.Observed {
				if src != client.Address.String() {
					r.fail("the backend saw %s, not the client (externalTrafficPolicy Local keeps the source)", src)
				}
			}
			r.figure("answered", float64(s.Received))
			return r, nil
		},
	}
}

// --- bfd-sessions -----------------------------------------------------------------

// With BFD in the spec, every router has an up BFD session with each MetalLB speaker it
// peers with (vtysh `show bfd peers json`). Control: one BGPPeer loses its BFD profile.
func bfdSessions() Check {
	var peerName string
	return Check{
		Name: "bfd-sessions",
		Applies: func(x *Lab) string {
			s := x.Lab.Spec.Spec
			if !s.BGP.BFD.Enabled {
				return "the spec does not enable BFD"
			}
			if s.LoadBalancer.Announcer != spec.AnnouncerMetalLB {
				return "BFD runs with MetalLB's speakers; Cilium's BGP control plane has no BFD in the versions v6lab supports"
			}
			return ""
		},
		Breakage: "one BGPPeer's bfdProfile removed (MetalLB stops BFD on that session)",
		Break: func(ctx context.Context, x *Lab) (func(context.Context) error, error) {
			n := x.Plan.KubeNodes[0]
			peerName = n.Name + "-" + n.Router
			profile, err := x.kubectl(ctx, "", "-n", "metallb-system", "get", "bgppeers.metallb.io", peerName, "-o", "jsonpath={.spec.bfdProfile}")
			if err != nil {
				return nil, err
			}
			patch := func(ctx context.Context, v string) error {
				body := `{"spec":{"bfdProfile":null}}`
				if v != "" {
					body = fmt.Sprintf(`{"spec":{"bfdProfile":%q}}`, v)
				}
				_, err := x.kubectl(ctx, "", "-n", "metallb-system", "patch", "bgppeers.metallb.io", peerName, "--type", "merge", "-p", body)
				return err
			}
			restore := func(ctx context.Context) error {
				if err := patch(ctx, strings.TrimSpace(profile)); err != nil {
					return err
				}
				return restored(ctx, x, "BFD", bfdOnce)
			}
			return restore, patch(ctx, "")
		},
		Run: func(ctx context.Context, x *Lab, control bool) (Result, error) {
			return settle(ctx, x, control, bfdOnce)
		},
	}
}

func bfdOnce(ctx context.Context, x *Lab) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	up := 0
	for _, n := range x.Plan.KubeNodes {
		out, err := x.Exec(ctx, n.Router, "vtysh", "-c", "show bfd peers json")
		if err != nil {
			return r, err
		}
		var peers []struct {
			Peer   string `json:"peer"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal([]byte(out), &peers); err != nil {
			return r, fmt.Errorf("%s: show bfd peers json: %w", n.Router, err)
		}
		state := "absent"
		for _, p := range peers {
			if a, err := netip.ParseAddr(p.Peer); err == nil && a == n.SpeakerAddress {
				state = p.Status
			}
		}
		if state != "up" {
			r.fail("%s: BFD with %s's speaker (%s) is %s", n.Router, n.Name, n.SpeakerAddress, state)
		} else {
			up++
		}
	}
	r.figure("bfd_up", float64(up))
	return r, nil
}
