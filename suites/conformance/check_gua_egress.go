package conformance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"v6lab.dev/v6lab/labs/hubble"
	"v6lab.dev/v6lab/labs/verdict"
)

// A pod of each application talks to the world host; on the nodes' uplinks and at the
// world host the source is the pod's own address, inside its application's /64, and
// the responder echoes it. Control: a pod in the first application drawing its address
// from another application's pool, and that application's pods probed.
func guaEgress() Check {
	const wrongPod = "wrong-pool"
	return Check{
		Name:         "gua-egress",
		Concurrent:   withServices,
		ControlGroup: disjointBreaks,
		Applies:      podsEgressAsThemselves,
		Breakage:     "a pod of the first application takes its address from the second application's pool (ipam.cilium.io/ip-pool)",
		Expect:       kindSourceOutsidePool,
		// The pod drawing from the wrong pool starts.
		ControlDrops: podStartDrops,
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
				// Gone already (never created: a control interrupted first) is restored.
				if err := x.Client.AppsV1().Deployments(ns).Delete(ctx, wrongPod, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
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
			var wire []hubble.Probe
			var nodes []string
			m := verdict.Match{Proto: "udp", DstPort: ProbePort, Dst: world.Address}
			apps := x.Plan.Apps
			if control {
				// The application the wrong pod joined: in another's window, other
				// controls of its group (ControlGroup) send to the world host from the
				// first application's pool.
				apps = apps[:1]
			}
			for _, app := range apps {
				pods, err := x.Pods(ctx, app.Namespace, EchoName)
				if err != nil {
					return r, err
				}
				if len(pods) == 0 {
					return r, fmt.Errorf("%s: no echo pod runs", app.Namespace)
				}
				start := time.Now()
				caps, sums, err := x.podsToWorld(ctx, "gua-egress-"+app.Name+suffix(control), pods, points)
				if err != nil {
					return r, err
				}
				end := time.Now()
				r.pcaps(caps)
				// Hubble's account of each pod's probes beside the wire's (sent: on its
				// node's uplink; delivered: at the world host): recorded, not judged.
				wire = append(wire, x.worldProbes(app.Name, pods, caps, start, end)...)
				for _, p := range pods {
					if !slices.Contains(nodes, p.Node) {
						nodes = append(nodes, p.Node)
					}
				}
				seen := 0
				for _, pt := range points {
					c := caps[pt]
					v := verdict.Source(c.Packets, m, []netip.Prefix{app.PodPool})
					seen += v.Matched
					if v.Matched > 0 && !v.Pass {
						r.fail(kindSourceOutsidePool, "%s at %s: %d packets from outside %s", app.Name, pt, v.Offenders, app.PodPool)
						r.Evidence = append(r.Evidence, Evidence(c.File, v.Evidence)...)
					}
				}
				if caps[points[0]].Packets == nil || verdict.Source(caps[points[0]].Packets, m, nil).Matched == 0 {
					r.fail(kindNothingSeen, "%s: the world host saw no probe: nothing proven", app.Name)
				}
				for p, s := range sums {
					if s.Received == 0 {
						r.fail(kindUnanswered, "%s: pod %s got no reply from the world host", app.Name, p.Name)
					}
					for src := range s.Observed {
						if src != p.IP.String() {
							r.fail(kindSourceRewritten, "%s: the world host saw %s for pod %s (%s)", app.Name, src, p.Name, p.IP)
						}
					}
					if !app.PodPool.Contains(p.IP) {
						r.fail(kindSourceOutsidePool, "%s: pod %s has %s, outside %s", app.Name, p.Name, p.IP, app.PodPool)
					}
				}
				r.figure("packets_"+app.Name, float64(seen))
			}
			if _, _, err := x.recordHubble(ctx, &r, wire, nodes); err != nil {
				return r, err
			}
			return r, nil
		},
	}
}
