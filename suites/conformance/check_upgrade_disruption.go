package conformance

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gopacket/gopacket/layers"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/runtime"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/reports"
)

// upgradeDisruption runs long-lived flows across an in-place Cilium upgrade (v6lab
// upgrade, the suite's -v6lab.upgrade-to): TCP connections client -> VIP, pod -> pod
// across nodes, pod -> ClusterIP and pod -> world, and 10 ms UDP streams client -> VIP
// and pod -> world. Each is judged at its sender's end, from the captures: every TCP
// connection survives (no reset, data after the rollout ended) and no UDP outage is
// longer than spec.upgrade's budget. Every agent's and the operator's replacement is on
// the same clock (the timeline). Variant: the same flows across a Helm upgrade at the
// same release that resizes the connection-tracking maps, which the agents then
// recreate empty: the state of every established flow is lost.
func upgradeDisruption() Check {
	return Check{
		Name: "upgrade-disruption",
		Applies: func(x *Lab) string {
			if x.UpgradeTo == "" {
				return "runs in an upgrade stage only (v6lab conformance --upgrade A,B, or the suite's -v6lab.upgrade-to)"
			}
			return ""
		},
		Variant: "the same flows across a rollout of every agent at the same release (connection-tracking and NAT maps resized, and a new Maglev hash seed) whose agents come back with empty connection-tracking and NAT tables (flushed on every agent): every flow's state lost and its backend chosen again, as by an upgrade that recreates those maps and changes the backend selection",
		Expect:  kindConnReset,
		// Restarted agents: packets toward addresses their new datapath does not know yet.
		PassDrops:    agentRestartDrops,
		ControlDrops: agentRestartDrops,
		Run:          runUpgradeDisruption,
	}
}

// Failure kinds of upgrade-disruption.
const (
	kindConnReset = "connection-reset" // a TCP connection was reset during the upgrade
	kindConnLost  = "connection-lost"  // a TCP connection carried no data after the upgrade
	kindUDPOutage = "udp-outage"       // a UDP stream's outage exceeded the budget
	// The flows run on this long after the rollout ended: a TCP connection that
	// stalled for an agent's restart (13-17 s measured) retransmits with exponential
	// backoff, its next try up to about as long after the path is back.
	upgradeSettle  = 25 * time.Second
	upgradeMaxTime = 15 * time.Minute // the probes' own bound (they are stopped before)
	// controlMaglevSeed is the control's Maglev hash seed (base64 of 12 bytes, as
	// maglev.hashSeed wants), not Cilium's default one.
	controlMaglevSeed = "djZsYWItY29udHJv"
)

// upFlow is one long-lived flow across the upgrade: who sends it where, judged on
// which capture point, as whose packets.
type upFlow struct {
	name   string // figure prefix
	tcp    bool
	member string // a lab member sends it, or
	pod    *Pod   // a pod does
	to     netip.AddrPort
	// wire is the server as the capture shows it: to, but for a ClusterIP the backend
	// Cilium's socket load balancer connects the pod to.
	wire  netip.AddrPort
	point string     // the capture point at the sender's end
	src   netip.Addr // the sender's address there
	// why, when set, says why the flow's survival is reported, not judged.
	why string
}

func runUpgradeDisruption(ctx context.Context, x *Lab, control bool) (Result, error) {
	r := Result{Pass: true, Reason: "ok", Figures: map[string]float64{}, Config: map[string]float64{}}
	budget := time.Duration(x.Lab.Spec.Spec.Upgrade.MaxUDPOutageMs) * time.Millisecond
	r.Config["budget_udp_outage_ms"] = float64(budget.Milliseconds())
	flows, points, err := x.upgradeFlows(ctx)
	if err != nil {
		return r, err
	}
	var res runtime.UpgradeResult
	var stopAt time.Time
	name := "upgrade" + suffix(control)
	caps, err := x.Capture(ctx, name, capture.Filter{IPv6Only: true}, points, func() error {
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var wg sync.WaitGroup
		for _, f := range flows {
			wg.Add(1)
			go func() {
				defer wg.Done()
				args := []string{"v6lab-probe", "send", "--to", f.to.String(), "--interval", probeInterval.String(), "--duration", upgradeMaxTime.String(), "--wait", "200ms"}
				if f.tcp {
					args = []string{"v6lab-probe", "tcp", "--to", f.to.String(), "--conns", fmt.Sprint(f.connections()), "--interval", "100ms", "--duration", upgradeMaxTime.String()}
				}
				var err error
				if f.pod != nil {
					_, err = x.PodExec(pctx, *f.pod, args...)
				} else {
					_, err = x.Exec(pctx, f.member, args...)
				}
				slog.Debug("upgrade-disruption: flow ended", "flow", f.name, "err", err)
			}()
		}
		// Every flow established before the rollout starts.
		time.Sleep(2 * time.Second)
		var uerr error
		if control {
			res, uerr = x.loseConnState(ctx)
		} else {
			res, uerr = runtime.Upgrade(ctx, x.Lab, x.Runtime, runtime.UpgradeOptions{To: x.UpgradeTo, Locked: true})
		}
		if uerr == nil {
			time.Sleep(upgradeSettle)
		}
		stopAt = time.Now()
		x.stopFlows(ctx, flows)
		cancel()
		wg.Wait()
		return uerr
	})
	if err != nil {
		return r, err
	}
	r.pcaps(caps)
	if control {
		// The lab's own values again: a second rollout, verified as the first.
		if _, err := runtime.Reconfigure(ctx, x.Lab, x.Runtime, nil); err != nil {
			return r, fmt.Errorf("restoring the lab's values: %w", err)
		}
	} else if err := x.upgraded(res); err != nil {
		return r, err
	}
	rolloutEnd := res.Ended
	r.Figures["rollout_ms"] = ms(res.Ended.Sub(res.RolloutStart))
	r.Timeline = append(r.Timeline, reports.Event{At: res.RolloutStart, Label: fmt.Sprintf("helm upgrade: Cilium %s -> %s", res.From, res.To)})
	for _, rs := range res.Restarts {
		who := rs.Component + " " + rs.Node
		if rs.Component == "operator" {
			who = "operator"
		}
		switch {
		case !rs.Stopping.IsZero() && !rs.Ready.IsZero():
			// One span per replaced pod: the old one stopping until the new one Ready.
			r.Timeline = append(r.Timeline, reports.Event{At: rs.Stopping, Until: rs.Ready, Lane: who, Kind: "restart", Label: "replaced (" + rs.OldPod + " -> " + rs.NewPod + ")"})
			r.Figures["restart_ms_"+strings.ReplaceAll(who, " ", "_")] = ms(rs.Ready.Sub(rs.Stopping))
		case !rs.Stopping.IsZero():
			r.Timeline = append(r.Timeline, reports.Event{At: rs.Stopping, Lane: who, Kind: "restart", Label: "stopping (" + rs.OldPod + ")"})
		case !rs.Ready.IsZero():
			r.Timeline = append(r.Timeline, reports.Event{At: rs.Ready, Lane: who, Kind: "restart", Label: "ready (" + rs.NewPod + ")"})
		}
	}
	r.Timeline = append(r.Timeline, reports.Event{At: rolloutEnd, Label: "rollout done: every agent and the operator Ready, BGP Established"})
	for _, f := range flows {
		if err := judgeUpgradeFlow(f, caps[f.point], stopAt, rolloutEnd, budget, &r); err != nil {
			return r, err
		}
	}
	sort.SliceStable(r.Timeline, func(i, j int) bool { return r.Timeline[i].At.Before(r.Timeline[j].At) })
	return r, nil
}

// judgeUpgradeFlow judges one flow on its sender's capture, up to stopAt (the probes
// were stopped then: what follows is their own ending).
func judgeUpgradeFlow(f upFlow, c Captured, stopAt, rolloutEnd time.Time, budget time.Duration, r *Result) error {
	var pkts []verdict.Packet
	for i := range c.Packets {
		if c.Packets[i].Time.Before(stopAt) {
			pkts = append(pkts, c.Packets[i])
		}
	}
	key := strings.NewReplacer(" ", "_", "->", "_to_", "-", "_").Replace(f.name)
	// The flow's own row of the timeline: from its first packet to its last judged one,
	// its outages, stalls and resets drawn over it.
	proto := layers.IPProtocolUDP
	if f.tcp {
		proto = layers.IPProtocolTCP
	}
	var first, last time.Time
	for _, p := range flowPackets(pkts, f) {
		if p.Proto == proto && (p.DstPort == f.server().Port() || p.SrcPort == f.server().Port()) {
			if first.IsZero() {
				first = p.Time
			}
			last = p.Time
		}
	}
	if !first.IsZero() {
		r.Timeline = append(r.Timeline, reports.Event{At: first, Until: last, Lane: f.name, Kind: "flow", Label: "packets seen"})
	}
	if f.tcp {
		streams, err := verdict.TCPStreams(verdict.Slice(pkts), verdict.Match{Proto: "tcp", Port: f.to.Port()}, f.src)
		if err != nil {
			return err
		}
		var conns, survived, resets, retrans int
		stall, stallAt := 0.0, time.Time{}
		for _, s := range streams {
			if !s.Handshake || s.Server != f.server() {
				continue
			}
			conns++
			retrans += s.Retransmits
			if s.LongestStallMs > stall {
				stall, stallAt = s.LongestStallMs, s.StallStart
			}
			if s.Resets > 0 {
				resets++
				r.Timeline = append(r.Timeline, reports.Event{At: s.ResetAt, Lane: f.name, Kind: "reset", Label: fmt.Sprintf("%s reset by the %s", s.Client, s.ResetBy)})
			}
			if s.Survived(rolloutEnd) {
				survived++
			}
		}
		r.Figures[key+"_conns"] = float64(conns)
		r.Figures[key+"_survived"] = float64(survived)
		r.Figures[key+"_resets"] = float64(resets)
		r.Figures[key+"_retransmits"] = float64(retrans)
		r.Figures[key+"_longest_stall_ms"] = stall
		if stall >= 300 && !stallAt.IsZero() { // three write intervals without an answer
			r.Timeline = append(r.Timeline, reports.Event{At: stallAt, Until: stallAt.Add(time.Duration(stall * float64(time.Millisecond))), Lane: f.name, Kind: "stall", Label: "longest stall"})
		}
		switch {
		case conns == 0:
			return fmt.Errorf("%s: no connection of the flow on %s (the probe did not connect)", f.name, c.File)
		case f.why != "":
			slog.Debug("upgrade-disruption: reported, not judged", "flow", f.name, "why", f.why)
		case resets > 0:
			r.fail(kindConnReset, "%s: %d of %d connections reset", f.name, resets, conns)
		case survived < conns:
			r.fail(kindConnLost, "%s: %d of %d connections carried no data after the rollout", f.name, conns-survived, conns)
		}
		return nil
	}
	// A request sent just before the probes were stopped has its reply after: the
	// stream's last 300 ms of requests are not judged.
	var udp []verdict.Packet
	for _, p := range flowPackets(pkts, f) {
		if p.Src != f.src || p.Time.Before(stopAt.Add(-300*time.Millisecond)) {
			udp = append(udp, p)
		}
	}
	m := verdict.Match{Proto: "udp", Port: f.to.Port()}
	v, err := verdict.OutageOf(verdict.Slice(udp), m, verdict.OutageOptions{MinGap: 3 * probeInterval, MaxLost: -1, Client: f.src})
	if err != nil {
		return err
	}
	r.Figures[key+"_replies"] = float64(v.Replies)
	r.Figures[key+"_lost"] = float64(v.Lost)
	longest := 0.0
	for _, w := range v.Windows {
		longest = max(longest, w.DurationMs)
	}
	r.Figures[key+"_max_outage_ms"] = longest
	r.Figures[key+"_windows"] = float64(len(v.Windows) + v.WindowsDropped)
	for _, w := range v.Windows {
		if w.DurationMs >= 100 { // shorter ones are counted, not drawn
			r.Timeline = append(r.Timeline, reports.Event{At: w.Start, Until: w.End, Lane: f.name, Kind: "outage", Label: "no reply"})
		}
	}
	switch {
	case v.Replies == 0:
		return fmt.Errorf("%s: no reply at all on %s (the stream never ran)", f.name, c.File)
	case v.Unrecovered:
		r.fail(kindUDPOutage, "%s: not answered again after the rollout (%d lost)", f.name, v.Lost)
	case budget > 0 && longest > ms(budget):
		r.fail(kindUDPOutage, "%s: outage %.0f ms, over the budget of %d ms", f.name, longest, budget.Milliseconds())
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// connections is how many TCP connections the flow opens: 8 to the VIP with a backend
// on every node (each lands on one of them), 4 elsewhere.
func (f upFlow) connections() int {
	if f.name == "client->vip tcp" {
		return 8
	}
	return 4
}

// server is the flow's server on the wire.
func (f upFlow) server() netip.AddrPort {
	if f.wire.IsValid() {
		return f.wire
	}
	return f.to
}

// flowPackets are the packets of one UDP flow at its sender's end: to and from its
// destination (the sender's own stream, when other flows share the point).
func flowPackets(pkts []verdict.Packet, f upFlow) []verdict.Packet {
	var out []verdict.Packet
	for _, p := range pkts {
		if dst := f.server().Addr(); (p.Src == f.src && p.Dst == dst) || (p.Src == dst && p.Dst == f.src) {
			out = append(out, p)
		}
	}
	return out
}

// upgradeFlows picks the flows and their capture points: the client's link, the world's
// link, and the uplink of the node the sending pod runs on (a node without the DSR
// backend). Replies to a pod are not seen on its veth (Cilium hands them to the pod's
// side directly), so the pod flows go to other nodes and are judged on that uplink: pod
// -> pod to an echo pod on another node, pod -> ClusterIP to the DSR Service, whose one
// backend is on the DSR node.
func (x *Lab) upgradeFlows(ctx context.Context) ([]upFlow, []string, error) {
	ns := x.Plan.Apps[0].Namespace
	vip := map[string]netip.Addr{}
	for _, svc := range []string{EchoName, DSRSvc, SNATSvc} {
		a, err := x.VIP(ctx, ns, svc)
		if err != nil {
			return nil, nil, err
		}
		vip[svc] = a
	}
	svc, err := x.Client.CoreV1().Services(ns).Get(ctx, DSRSvc, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	snat, err := x.Client.CoreV1().Services(ns).Get(ctx, SNATSvc, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	var nodePort uint16
	for _, p := range snat.Spec.Ports {
		if p.Name == "tcp" {
			nodePort = uint16(p.NodePort)
		}
	}
	if nodePort == 0 {
		return nil, nil, fmt.Errorf("service %s/%s has no NodePort for tcp", ns, SNATSvc)
	}
	clusterIP, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil {
		return nil, nil, fmt.Errorf("service %s/%s: ClusterIP %q: %w", ns, DSRSvc, svc.Spec.ClusterIP, err)
	}
	dsr, err := x.Pods(ctx, ns, DSRName)
	if err != nil || len(dsr) != 1 {
		return nil, nil, fmt.Errorf("the DSR backend: %d pods (%v)", len(dsr), err)
	}
	pods, err := x.Pods(ctx, ns, EchoName)
	if err != nil {
		return nil, nil, err
	}
	entry := x.nonDSRNode()
	from := entry.Name
	var a, b *Pod
	for i := range pods {
		switch {
		case pods[i].Node == from && a == nil:
			a = &pods[i]
		case pods[i].Node != from && b == nil:
			b = &pods[i]
		}
	}
	if a == nil || b == nil {
		return nil, nil, fmt.Errorf("echo pods on %s and on another node needed, found %d pods", from, len(pods))
	}
	client, world := x.Plan.HostByRole("client"), x.Plan.HostByRole("world")
	cl, wl, up := x.HostLink("client"), x.HostLink("world"), x.Uplink(from)
	flows := []upFlow{
		{name: "client->vip tcp", tcp: true, member: client.Name, to: netip.AddrPortFrom(vip[EchoName], TCPPort), point: cl, src: client.Address},
		{name: "client->snat-vip tcp", tcp: true, member: client.Name, to: netip.AddrPortFrom(vip[SNATSvc], TCPPort), point: cl, src: client.Address,
			why: "with SNAT only the entry node holds a connection's state, and a restarting agent's BGP session withdraws its node's VIP routes: the routers move the connection to a node that has none (as in failover)"},
		// A node's own address stays routed while its agent restarts: the connection
		// keeps its entry node, whose connection-tracking and NAT state must survive.
		{name: "client->nodeport-snat tcp", tcp: true, member: client.Name, to: netip.AddrPortFrom(entry.Address, nodePort), point: cl, src: client.Address},
		{name: "client->vip udp", member: client.Name, to: netip.AddrPortFrom(vip[DSRSvc], ProbePort), point: cl, src: client.Address},
		{name: "pod->pod tcp", tcp: true, pod: a, to: netip.AddrPortFrom(b.IP, TCPPort), point: up, src: a.IP},
		{name: "pod->clusterip tcp", tcp: true, pod: a, to: netip.AddrPortFrom(clusterIP, TCPPort), wire: netip.AddrPortFrom(dsr[0].IP, TCPPort), point: up, src: a.IP},
		{name: "pod->world tcp", tcp: true, pod: a, to: netip.AddrPortFrom(world.Address, TCPPort), point: up, src: a.IP},
		{name: "pod->world udp", pod: a, to: netip.AddrPortFrom(world.Address, ProbePort), point: up, src: a.IP},
	}
	return flows, []string{cl, wl, up}, x.StartResponder(ctx)
}

// stopFlows stops every probe of the flows (the client's, the pods').
func (x *Lab) stopFlows(ctx context.Context, flows []upFlow) {
	done := map[string]bool{}
	for _, f := range flows {
		if f.pod != nil {
			if !done[f.pod.Name] {
				_, _ = x.PodExec(ctx, *f.pod, "pkill", "-f", "v6lab-probe (send|tcp)")
			}
			done[f.pod.Name] = true
		} else if !done[f.member] {
			_, _ = x.Exec(ctx, f.member, "pkill", "-f", "v6lab-probe (send|tcp)")
			done[f.member] = true
		}
	}
}

// upgraded makes the suite see the lab at its new release: the rest of the suite judges
// it, and the report says from which release it came.
func (x *Lab) upgraded(res runtime.UpgradeResult) error {
	l, err := x.Lab.WithCilium(res.To)
	if err != nil {
		return err
	}
	x.Lab, x.Plan = l, l.Plan
	x.mu.Lock()
	x.report.Labels["cilium"] = res.To
	x.report.Labels["upgradedFrom"] = res.From
	x.mu.Unlock()
	return nil
}

// loseConnState is the control's "upgrade": a rollout of every agent at the running
// release (its connection-tracking and NAT maps resized and, with Maglev, a new hash
// seed; rollOutCiliumPods so that the changed configuration restarts them), after which
// every agent's connection-tracking and NAT tables are flushed (cilium-dbg bpf ct flush
// global, bpf nat flush): what an upgrade that recreates those maps and changes the
// backend selection leaves. A flush alone is not enough: Maglev picks the same backend
// for a flow whose state is gone, and the flow lives on (measured: at 1.20.2 all 8 VIP
// connections survived it); with the seed changed most flows land on another backend,
// which resets them. The run restores the lab's own values after the flows (a second
// rollout, verified).
func (x *Lab) loseConnState(ctx context.Context) (runtime.UpgradeResult, error) {
	values := map[string]any{"rollOutCiliumPods": true,
		"bpf": map[string]any{"ctTcpMax": 300000, "ctAnyMax": 150000, "natMax": 300000}}
	if x.Lab.Spec.Spec.LoadBalancer.Algorithm == "maglev" {
		values["maglev"] = map[string]any{"hashSeed": controlMaglevSeed}
	}
	res, err := runtime.Reconfigure(ctx, x.Lab, x.Runtime, values)
	if err != nil {
		return res, err
	}
	agents, err := x.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=cilium"})
	if err != nil {
		return res, err
	}
	for _, a := range agents.Items {
		for _, args := range [][]string{{"bpf", "ct", "flush", "global"}, {"bpf", "nat", "flush"}} {
			if out, err := x.kubectl(ctx, "", append([]string{"-n", "kube-system", "exec", a.Name, "-c", "cilium-agent", "--", "cilium-dbg"}, args...)...); err != nil {
				return res, fmt.Errorf("agent on %s: cilium-dbg %s: %w: %s", a.Spec.NodeName, strings.Join(args, " "), err, out)
			}
		}
	}
	res.Ended = time.Now()
	return res, nil
}
