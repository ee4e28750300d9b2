package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	probewire "v6lab.dev/v6lab/fixtures/probe/wire"
	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/runtime"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/reports"
)

// A Service with externalTrafficPolicy Local in front of one pod per node
// (RemovalName, with a readiness probe) is announced by every node. When the first
// node's pod becomes unready, that node has no local backend left and must withdraw
// the VIP from BGP; when it is ready again, announce it again. Judged on the node's
// uplink: the BGP UPDATE that withdraws the VIP's /128 (MP_UNREACH_NLRI), measured
// from the moment its readiness probe began to fail (the probe's period, 1 s, is in
// it), and the one that announces it again, from the moment it could succeed again. The router's own view (vtysh, polled) is
// reported beside it. Variant: the same pod made unready behind the eTP Cluster
// Service in front of the same pods, which every node keeps announcing.
func etpLocalWithdrawal() Check {
	return Check{
		Name:       "etp-local-withdrawal",
		Concurrent: withPolicies,
		Applies:    routedVIPs,
		Variant:    "the same pod made unready behind the externalTrafficPolicy Cluster Service in front of the same pods, which every node keeps announcing",
		Expect:     kindNotWithdrawn,
		Run:        runLocalWithdrawal,
	}
}

// withdrawalWait is how long the check waits for the withdrawal (configuration).
const withdrawalWait = 8 * time.Second

func runLocalWithdrawal(ctx context.Context, x *Lab, control bool) (res Result, err error) {
	r := Result{Pass: true, Reason: "ok"}
	ns, svc := x.Plan.Apps[0].Namespace, RemovalLocal
	if control {
		svc = RemovalSvc
	}
	vip, err := x.VIP(ctx, ns, svc)
	if err != nil {
		return r, err
	}
	pods, err := x.Pods(ctx, ns, RemovalName)
	if err != nil {
		return r, err
	}
	n := x.Plan.KubeNodes[0]
	b := onNode(pods, n.Name)
	if b.Name == "" {
		return r, fmt.Errorf("no ready %s pod on %s", RemovalName, n.Name)
	}
	hop := x.announcer(n.Name)
	router := runtime.Router(x.Plan, n.Router)
	prefix := netip.PrefixFrom(vip, 128)
	// Every node announces it first (a pod just made ready again by another check may
	// not be announced yet).
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		via, err := router.PathsVia(ctx, prefix, hop)
		return via, err
	}); err != nil {
		return r, fmt.Errorf("%s has no route to %s through %s before the check: %w", n.Router, vip, n.Name, err)
	}
	defer func() {
		if rerr := x.setReady(ctx, b, true); err == nil && rerr != nil {
			err = rerr
		}
	}()
	// Measured from the cause (the readiness probe's marker written, or removed): the
	// API's view of the pod may come later than the agent's of the EndpointSlice (Cilium
	// 1.18.4 withdrew before the suite saw the pod not Ready).
	var failing, gone, back time.Time
	var routerGone time.Duration = -1
	uplink := x.Uplink(n.Name)
	caps, err := x.Capture(ctx, "etp-local-withdrawal"+suffix(control), capture.Filter{Proto: "tcp", Port: verdict.BGPPort}, []string{uplink}, func() error {
		failing = time.Now()
		if err := x.setReady(ctx, b, false); err != nil {
			return err
		}
		gone = time.Now()
		var err error
		if routerGone, err = waitWithdrawn(ctx, x, n.Router, vip, hop, withdrawalWait); err != nil {
			return err
		}
		back = time.Now()
		if err := x.setReady(ctx, b, true); err != nil {
			return err
		}
		// Announced again: the router routes through the node (at most 30 s).
		return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			return router.PathsVia(ctx, prefix, hop)
		})
	})
	if err != nil {
		return r, err
	}
	r.pcaps(caps)
	r.config("withdrawal_wait_ms", float64(withdrawalWait.Milliseconds()))
	r.figure("api_not_ready_ms", float64(gone.Sub(failing).Milliseconds()))
	r.config("readiness_period_ms", 1000)
	judgeWithdrawal(caps[uplink], prefix, n.Name, failing, back, &r)
	if routerGone >= 0 {
		r.figure("router_withdrawn_ms", float64(routerGone.Milliseconds()))
		r.Evidence = append(r.Evidence, reports.Evidence{Note: fmt.Sprintf("%s's route to %s stopped going through %s %s after the pod was not Ready (vtysh, polled every 50 ms)", n.Router, vip, n.Name, routerGone.Round(time.Millisecond))})
	}
	return r, nil
}

// judgeWithdrawal finds, on the node's uplink, the first BGP UPDATE withdrawing the
// prefix after from, and the first announcing it after back.
func judgeWithdrawal(c Captured, prefix netip.Prefix, node string, from, back time.Time, r *Result) {
	var withdrawn, announced *verdict.Packet
	for i := range c.Packets {
		p := &c.Packets[i]
		if p.BGP == nil {
			continue
		}
		for _, w := range p.BGP.Withdrawn {
			if w == prefix && withdrawn == nil && p.Time.After(from) {
				withdrawn = p
			}
		}
		for _, a := range p.BGP.Announced {
			if a == prefix && announced == nil && !back.IsZero() && p.Time.After(back) {
				announced = p
			}
		}
	}
	if withdrawn == nil {
		r.fail(kindNotWithdrawn, "no BGP UPDATE from %s withdrew %s after its last local backend went unready", node, prefix)
		return
	}
	ms := float64(withdrawn.Time.Sub(from).Microseconds()) / 1000
	r.figure("withdrawn_ms", ms)
	r.Evidence = append(r.Evidence, reports.Evidence{File: c.File, Frame: withdrawn.Index, Time: withdrawn.Time, Src: withdrawn.Src.String(), Dst: withdrawn.Dst.String(),
		Note: fmt.Sprintf("BGP UPDATE withdrawing %s, %.0f ms after %s's last local backend's readiness probe began to fail (its period: 1 s)", prefix, ms, node)})
	if announced == nil {
		r.fail(kindRouteMissing, "no BGP UPDATE from %s announced %s again after its backend was Ready", node, prefix)
		return
	}
	ms = float64(announced.Time.Sub(back).Microseconds()) / 1000
	r.figure("announced_again_ms", ms)
	r.Evidence = append(r.Evidence, reports.Evidence{File: c.File, Frame: announced.Index, Time: announced.Time, Src: announced.Src.String(), Dst: announced.Dst.String(),
		Note: fmt.Sprintf("BGP UPDATE announcing %s again, %.0f ms after the backend's readiness probe could succeed again", prefix, ms)})
}

// setReady makes an echo pod of RemovalName ready (or not) and waits, at most 20 s,
// until the API shows it so.
func (x *Lab) setReady(ctx context.Context, p Pod, ready bool) error {
	cmd := []string{"rm", "-f", probewire.UnreadyFile}
	if !ready {
		cmd = []string{"touch", probewire.UnreadyFile}
	}
	if _, err := x.PodExec(ctx, p, cmd...); err != nil {
		return err
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := x.Client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return podReady(got) == ready, nil
	})
	if err != nil {
		return fmt.Errorf("%s not %s within 20 s", p.Name, map[bool]string{true: "Ready", false: "unready"}[ready])
	}
	return nil
}
