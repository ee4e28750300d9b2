package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket/layers"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	probewire "v6lab.dev/v6lab/fixtures/probe/wire"
	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/reports"
)

// Under a 10 ms UDP stream from the client to a VIP with a backend on every node (one
// flow: Maglev keeps it on one backend), the backend the flow reaches is deleted; then,
// under a second stream of the same flow, the backend it moved to is made unready (its
// readiness probe fails). Once the API shows a backend's endpoint gone (the pod
// deleted, or not Ready) and the datapath had removalBudget (configuration) to follow,
// 30 new connections from the client must all avoid it: judged on its veth (its
// SYN-ACKs) and on every node's uplink (SYNs forwarded to its address). The
// established stream is measured, not judged: Cilium keeps an established flow on an
// unready or terminating backend (cilium/cilium#42170), so the report gives how long
// the stream stayed on it, whether it came back and its loss window at the client.
// Variant: the flow's backend is left in place, as by a datapath that ignored the
// removal: new connections still reach it. (A Service with publishNotReadyAddresses,
// the first control, is version-dependent: Cilium 1.20.2 sent new connections to its
// unready pod, 1.18.4 none.)
func backendRemoval() Check {
	return Check{
		Name:       "backend-removal",
		Concurrent: withServices,
		Applies:    routedVIPs,
		Variant:    "the flow's backend is left in place (nothing removes it, as a datapath that ignored the removal would): new connections still reach it",
		Expect:     kindReachedRemoved,
		// The stream still sent to the deleted backend's address (Stale or unroutable IP);
		// its replacement pod starting.
		PassDrops: append([]string{reasonStaleIP}, podStartDrops...),
		Run:       runBackendRemoval,
	}
}

// kindReachedRemoved: a request reached a backend after its endpoint was gone.
const kindReachedRemoved = "reached-removed-backend"

// removalBudget is how long after the API shows an endpoint gone the datapath may
// still send to it (the EndpointSlice controller, then every agent).
const removalBudget = 2 * time.Second

// removalSport is the stream's source port: the same flow, stream after stream.
const removalSport = 40999

func runBackendRemoval(ctx context.Context, x *Lab, control bool) (r Result, err error) {
	r = Result{Pass: true, Reason: "ok"}
	r.config("removal_budget_ms", float64(removalBudget.Milliseconds()))
	// The loss window after a deletion spreads by itself (the kubelet, the
	// EndpointSlice controller, every agent): 428-902 ms in five runs of one release.
	// compare widens its tolerance of each loss window by this much.
	r.config(reports.SpreadOf("loss_ms_deleted"), 1000)
	r.config(reports.SpreadOf("loss_ms_unready"), 1000)
	vip, err := x.VIP(ctx, x.Plan.Apps[0].Namespace, RemovalSvc)
	if err != nil {
		return r, err
	}
	// Whatever happens, the lab gets its backends back: ready, and in every agent.
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
		defer cancel()
		if rerr := x.restoreRemoval(rctx, vip); rerr != nil && err == nil {
			err = fmt.Errorf("restoring %s: %w", RemovalName, rerr)
		}
	}()
	events := []string{"deleted", "unready"}
	if control {
		events = []string{"kept"}
	}
	for _, ev := range events {
		if err = removeOnce(ctx, x, vip, ev, control, &r); err != nil {
			return r, err
		}
	}
	return r, nil
}

// removeOnce runs one stream of the flow and removes its backend (ev: deleted or
// unready) a second into it; it judges the stream from the captures.
func removeOnce(ctx context.Context, x *Lab, vip netip.Addr, ev string, control bool, r *Result) error {
	ns := x.Plan.Apps[0].Namespace
	pods, err := x.Pods(ctx, ns, RemovalName)
	if err != nil {
		return err
	}
	if len(pods) < 2 {
		return fmt.Errorf("%d %s pods ready: the stream needs another backend to move to", len(pods), RemovalName)
	}
	ifaces, err := x.PodIfaces(ctx)
	if err != nil {
		return err
	}
	client := x.Plan.HostByRole("client")
	to := netip.AddrPortFrom(vip, ProbePort)
	b, err := x.flowBackend(ctx, "removal-"+ev+suffix(control), client.Name, to, pods, ifaces)
	if err != nil {
		return err
	}
	// A deleted pod's veth goes with it: only the uplinks show what is sent to it.
	veth := ifaces[b.IP]
	if ev == "deleted" {
		veth = ""
	}
	points := []string{x.HostLink("client")}
	for _, n := range x.Plan.KubeNodes {
		points = append(points, x.Uplink(n.Name))
	}
	if veth != "" {
		points = append(points, veth)
	}
	var gone time.Time
	var hs HTTPSummary
	caps, err := x.Capture(ctx, "removal-"+ev+suffix(control), capture.Filter{IPv6Only: true}, points, func() error {
		errc := make(chan error, 1)
		go func() {
			_, err := x.ProbeUDP(ctx, client.Name, to, "--interval", "10ms", "--duration", "5s", "--wait", "500ms", "--sport", fmt.Sprint(removalSport))
			errc <- err
		}()
		time.Sleep(time.Second)
		var err error
		if gone, err = x.removeBackend(ctx, b, ev); err == nil {
			// New connections, once the datapath had its time to follow.
			time.Sleep(time.Until(gone.Add(removalBudget)))
			hs, err = x.ProbeHTTP(ctx, client.Name, vip, removalConns)
		}
		if serr := <-errc; err == nil {
			err = serr
		}
		return err
	}, silentOK(points[1:]...))
	if err != nil {
		return err
	}
	r.pcaps(caps)
	judgeRemoval(x, ev, b, vip, gone, points[0], veth, caps, hs, r)
	return nil
}

// removalConns new connections, after a backend is gone, must all avoid it: with
// three backends, Maglev would give it a third of them.
const removalConns = 30

// judgeRemoval: no new connection reaches b once gone + removalBudget passed (on its
// veth, unless "", its SYN-ACKs; on the node uplinks, SYNs forwarded to its address),
// and every one is answered; the established stream is reported: how long it stayed on
// b (Cilium keeps established flows on an unready or terminating backend, by design:
// cilium/cilium#42170), whether it came back at the client, its loss window.
func judgeRemoval(x *Lab, ev string, b Pod, vip netip.Addr, gone time.Time, atClient, veth string, caps map[string]Captured, hs HTTPSummary, r *Result) {
	limit := gone.Add(removalBudget)
	late, stayed := 0, time.Time{}
	for pt, c := range caps {
		if pt == atClient {
			continue
		}
		for j := range c.Packets {
			p, at := c.Packets[j].Sent(), c.Packets[j].Time
			switch {
			case p.Probe != nil && ((pt == veth && p.Src == b.IP && p.Probe.Reply) || (pt != veth && p.Dst == b.IP && !p.Probe.Reply)):
				if at.After(stayed) {
					stayed = at
				}
			case p.Proto == layers.IPProtocolTCP && p.TCPFlags&verdict.TCPSyn != 0 && at.After(limit) &&
				((pt == veth && p.Src == b.IP && p.SrcPort == podHTTP && p.TCPFlags&verdict.TCPAck != 0) ||
					(pt != veth && p.Dst == b.IP && p.DstPort == podHTTP && p.TCPFlags&verdict.TCPAck == 0)):
				late++
				if late <= 3 {
					r.Evidence = append(r.Evidence, reports.Evidence{File: c.File, Frame: c.Packets[j].Index, Time: at,
						Src: p.Src.String(), Dst: p.Dst.String(), Note: fmt.Sprintf("a new connection reached the %s backend %s %s after its endpoint was gone", ev, b.Name, at.Sub(gone).Round(time.Millisecond))})
				}
			}
		}
	}
	if late > 0 {
		r.fail(kindReachedRemoved, "%s backend %s (%s): %d new connections reached it later than %s after its endpoint was gone", ev, b.Name, b.Node, late, removalBudget)
	}
	if hs.OK != hs.Requests || hs.Requests == 0 {
		r.fail(kindUnanswered, "%s: %d of %d new connections to %s answered", ev, hs.OK, hs.Requests, vip)
	}
	r.figure("new_conns_"+ev, float64(hs.Requests))
	if !stayed.IsZero() {
		// Measured, not judged (and never a regression in compare: kept_).
		r.figure("kept_stream_on_backend_ms_"+ev, float64(stayed.Sub(gone).Milliseconds()))
	}
	client := x.Plan.HostByRole("client").Address
	// The stream's packets only (to the VIP and back): the client sends other checks'
	// probes to the same port while this one runs (Check.Concurrent).
	v, err := verdict.OutageOf(verdict.Slice(withAddr(caps[atClient].Packets, vip)), verdict.Match{Proto: "udp", Port: ProbePort}, verdict.OutageOptions{Client: client, MaxLost: -1})
	switch {
	case err != nil:
		r.fail(kindNothingSeen, "%s: the client's capture: %v", ev, err)
	case v.Replies == 0:
		r.fail(kindNothingSeen, "%s: no reply of the stream to %s at the client", ev, vip)
	default:
		worst := 0.0
		for _, w := range v.Windows {
			worst = max(worst, w.DurationMs)
		}
		r.figure("loss_ms_"+ev, worst)
		r.figure("lost_"+ev, float64(v.Lost))
		r.figure("stream_recovered_"+ev, map[bool]float64{true: 0, false: 1}[v.Unrecovered])
		r.Evidence = append(r.Evidence, reports.Evidence{File: caps[atClient].File,
			Note: fmt.Sprintf("%s backend %s on %s: the established stream lost %d probes, longest loss window %.0f ms, came back: %v; it reached the backend until %s after its endpoint was gone",
				ev, b.Name, b.Node, v.Lost, worst, !v.Unrecovered, stayed.Sub(gone).Round(time.Millisecond))})
	}
}

// flowBackend says which backend the stream's flow (the client's removalSport) reaches:
// the one whose veth shows the replies to a few probes.
func (x *Lab) flowBackend(ctx context.Context, check, member string, to netip.AddrPort, pods []Pod, ifaces map[netip.Addr]string) (Pod, error) {
	points, err := podVeths(ifaces, pods)
	if err != nil {
		return Pod{}, err
	}
	caps, err := x.Capture(ctx, check+"-flow", capture.Filter{Proto: "udp", Port: ProbePort}, points, func() error {
		_, err := x.ProbeUDP(ctx, member, to, "--count", "3", "--interval", "10ms", "--wait", "300ms", "--sport", fmt.Sprint(removalSport))
		return err
	}, silentOK(points...))
	if err != nil {
		return Pod{}, err
	}
	var found []Pod
	for i, p := range pods {
		for j := range caps[points[i]].Packets {
			if q := caps[points[i]].Packets[j].Sent(); q.Src == p.IP && q.Probe != nil && q.Probe.Reply {
				found = append(found, p)
				break
			}
		}
	}
	if len(found) != 1 {
		return Pod{}, fmt.Errorf("the flow from port %d to %s reached %d backends, want one: %v", removalSport, to, len(found), found)
	}
	return found[0], nil
}

// removeBackend deletes b, or makes it unready, and says when the API showed its
// endpoint gone: the deletion accepted, or the pod no longer Ready.
func (x *Lab) removeBackend(ctx context.Context, b Pod, ev string) (time.Time, error) {
	pods := x.Client.CoreV1().Pods(b.Namespace)
	switch ev {
	case "kept": // the control: nothing is removed
		return time.Now(), nil
	case "deleted":
		if err := pods.Delete(ctx, b.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(1))}); err != nil {
			return time.Time{}, err
		}
		return time.Now(), nil
	}
	if _, err := x.PodExec(ctx, b, "touch", probewire.UnreadyFile); err != nil {
		return time.Time{}, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		p, err := pods.Get(ctx, b.Name, metav1.GetOptions{})
		if err != nil {
			return time.Time{}, err
		}
		if !podReady(p) {
			return time.Now(), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("%s still Ready 20 s after its readiness probe began to fail", b.Name)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// restoreRemoval makes every pod of RemovalName ready again and waits until they are
// all Ready and every agent has them as the VIP's backends.
func (x *Lab) restoreRemoval(ctx context.Context, vip netip.Addr) error {
	ns := x.Plan.Apps[0].Namespace
	list, err := x.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + RemovalName})
	if err != nil {
		return err
	}
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			if _, err := x.PodExec(ctx, Pod{Name: p.Name, Namespace: ns}, "rm", "-f", probewire.UnreadyFile); err != nil {
				return err
			}
		}
	}
	if err := waitPods(ctx, x, ns, RemovalName, len(x.Plan.KubeNodes)); err != nil {
		return err
	}
	if err := x.WaitServiceBackends(ctx, vip, len(x.Plan.KubeNodes), 2*time.Minute); err != nil {
		return err
	}
	return x.WaitDatapath(ctx, 2*time.Minute) // the replacement pod known to every agent
}
