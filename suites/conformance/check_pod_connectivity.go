package conformance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/verdict"
)

// Every echo pod reaches a pod of another application on another node, and the world
// host; every probe is answered (the capture at the world host holds the requests, the
// nodes' uplinks the pod-to-pod ones).
// Control: a NetworkPolicy that denies all ingress in the second application.
func podConnectivity() Check {
	return Check{
		Name:     "pod-connectivity",
		Applies:  always,
		Breakage: "a NetworkPolicy denying all ingress in the second application's namespace",
		Expect:   kindUnanswered,
		Break: func(ctx context.Context, x *Lab) (func(context.Context) error, error) {
			ns := x.Plan.Apps[len(x.Plan.Apps)-1].Namespace
			np := &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: "v6lab-deny-all", Namespace: ns},
				Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
			}
			// In effect, and lifted again, as every endpoint's agent realized it — never
			// after a fixed sleep (a tunnel-mode CI run ran the control before the
			// policy was enforced, and the control passed).
			restore := func(ctx context.Context) error {
				if err := x.Client.NetworkingV1().NetworkPolicies(ns).Delete(ctx, np.Name, metav1.DeleteOptions{}); err != nil {
					return err
				}
				return x.WaitIngressEnforcement(ctx, ns, false, 2*time.Minute)
			}
			if _, err := x.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
				return nil, err
			}
			return restore, x.WaitIngressEnforcement(ctx, ns, true, 2*time.Minute)
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
							r.fail(kindUnanswered, "%s (%s, %s) -> %s: %d of %d answered", from.Name, from.IP, from.Node, to, s.Received, s.Sent)
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
				r.fail(kindNothingSeen, "the world host saw no probe")
			}
			r.figure("pairs", float64(pairs))
			r.figure("answered", float64(answered))
			return r, nil
		},
	}
}
