package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"v6lab.dev/v6lab/labs/hubble"
	"v6lab.dev/v6lab/labs/verdict"
)

// Every echo pod on every node talks to the world host; no packet leaves any node, or
// arrives at the world host, with a source outside the pod pools. Control: Cilium's own
// IPv6 masquerading switched on for the first node (a CiliumNodeConfig, the per-node
// configuration operators use) and that node's agent replaced, then the object removed
// and the agent replaced again. One node is enough to break the property, and one
// agent comes back sooner than three (measured on the default lab: 10.9 s, against
// 15.9 s for all three at once).
func noMasquerade() Check {
	return Check{
		Name:         "no-masquerade",
		Applies:      podsEgressAsThemselves,
		Breakage:     "Cilium's IPv6 masquerading enabled on the first node (enable-ipv6-masquerade, enable-bpf-masquerade in a CiliumNodeConfig) and its agent replaced",
		Expect:       kindSourceTranslated,
		ControlDrops: agentRestartDrops,
		Break: func(ctx context.Context, x *Lab) (func(context.Context) error, error) {
			node := x.Plan.KubeNodes[0].Name
			restore := func(ctx context.Context) error {
				if _, err := x.kubectl(ctx, "", "-n", "kube-system", "delete", "ciliumnodeconfig", masqueradeConfig, "--ignore-not-found", "--wait"); err != nil {
					return err
				}
				return x.restartAgents(ctx, 5*time.Minute, node)
			}
			doc, err := json.Marshal(map[string]any{
				"apiVersion": "cilium.io/v2", "kind": "CiliumNodeConfig",
				"metadata": map[string]any{"name": masqueradeConfig, "namespace": "kube-system"},
				"spec": map[string]any{
					"nodeSelector": matchLabels(map[string]string{"kubernetes.io/hostname": node}),
					"defaults":     map[string]string{"enable-ipv6-masquerade": "true", "enable-bpf-masquerade": "true"},
				},
			})
			if err != nil {
				return nil, err
			}
			if _, err := x.kubectl(ctx, string(doc), "apply", "-f", "-"); err != nil {
				return restore, err
			}
			if err := x.restartAgents(ctx, 5*time.Minute, node); err != nil {
				return restore, err
			}
			return restore, x.waitMasqueraded(ctx, node, time.Minute)
		},
		Run: func(ctx context.Context, x *Lab, control bool) (Result, error) {
			if !control {
				return noMasqueradeOnce(ctx, x, false)
			}
			// The break waited until the wire showed one pod masqueraded
			// (waitMasqueraded); should the node's other pods lag, the control
			// probes again, for at most 30 s, until the lab settles.
			return settle(ctx, x, true, func(ctx context.Context, x *Lab) (Result, error) { return noMasqueradeOnce(ctx, x, true) })
		},
	}
}

// waitMasqueraded waits until the world host sees another source than a pod's own for
// the probes of an echo pod on node (the responder echoes the source it saw): the
// agent Ready is not yet its programs reloaded with masquerading (one control run
// probed a moment too early), so the control is in effect when the wire says so.
func (x *Lab) waitMasqueraded(ctx context.Context, node string, timeout time.Duration) error {
	pods, err := x.Pods(ctx, x.Plan.Apps[0].Namespace, EchoName)
	if err != nil {
		return err
	}
	p := onNode(pods, node)
	if p.Name == "" {
		return fmt.Errorf("no echo pod of %s on %s", x.Plan.Apps[0].Namespace, node)
	}
	if err := x.StartResponder(ctx); err != nil {
		return err
	}
	to := netip.AddrPortFrom(x.Plan.HostByRole("world").Address, ProbePort)
	var seen map[string]int
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		s, err := x.PodProbeUDP(ctx, p, to, "--count", "3", "--interval", "10ms", "--wait", "300ms")
		if err != nil {
			return false, nil
		}
		seen = s.Observed
		for src := range s.Observed {
			if src != p.IP.String() {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("%s's probes still reach the world host from its own address %s (seen: %v) %s after its agent came back: masquerading not in effect", p.Name, p.IP, seen, timeout)
	}
	return nil
}

// masqueradeConfig is the CiliumNodeConfig of no-masquerade's control.
const masqueradeConfig = "v6lab-masquerade"

func noMasqueradeOnce(ctx context.Context, x *Lab, control bool) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	if err := x.StartResponder(ctx); err != nil {
		return r, err
	}
	world := x.Plan.HostByRole("world")
	points := x.worldAndUplinks()
	pools := []netip.Prefix{x.Plan.Pods.Block}
	var pods []Pod
	byApp := make([][]Pod, len(x.Plan.Apps))
	for i, app := range x.Plan.Apps {
		p, err := x.Pods(ctx, app.Namespace, EchoName)
		if err != nil {
			return r, err
		}
		pods = append(pods, p...)
		byApp[i] = p
	}
	start := time.Now()
	caps, sums, err := x.podsToWorld(ctx, "no-masquerade"+suffix(control), pods, points)
	if err != nil {
		return r, err
	}
	end := time.Now()
	r.pcaps(caps)
	m := verdict.Match{Proto: "udp", DstPort: ProbePort, Dst: world.Address}
	total := 0
	for _, pt := range points {
		v := verdict.Source(caps[pt].Packets, m, pools)
		total += v.Matched
		if !v.Pass && v.Matched > 0 {
			r.fail(kindSourceTranslated, "%s: %d of %d packets with a translated source (%v)", pt, v.Offenders, v.Matched, keys(v.Sources))
			r.Evidence = append(r.Evidence, Evidence(caps[pt].File, v.Evidence)...)
		}
	}
	if total == 0 {
		r.fail(kindNothingSeen, "no probe captured: nothing proven")
	}
	for p, s := range sums {
		for src := range s.Observed {
			if src != p.IP.String() {
				r.fail(kindSourceRewritten, "the world host saw %s for pod %s (%s)", src, p.Name, p.IP)
			}
		}
		if s.Received == 0 {
			r.fail(kindUnanswered, "pod %s got no reply", p.Name)
		}
	}
	r.figure("pods", float64(len(pods)))
	r.figure("packets", float64(total))
	// Hubble's account of each pod's probes beside the wire's: recorded, not judged.
	// Hubble reports a flow before the node translates it: under the control's
	// masquerading the wire shows no probe leaving with the pod's address, while
	// Hubble forwards it (a control disagreement, as it must be).
	var wire []hubble.Probe
	for i, app := range x.Plan.Apps {
		wire = append(wire, x.worldProbes(app.Name, byApp[i], caps, start, end)...)
	}
	if _, _, err := x.recordHubble(ctx, &r, wire, nil); err != nil {
		return r, err
	}
	return r, nil
}
