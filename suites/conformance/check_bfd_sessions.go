package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"v6lab.dev/v6lab/labs/runtime"
	"v6lab.dev/v6lab/labs/spec"
)

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
		Expect:   kindBFDDown,
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
		peers, err := runtime.Router(x.Plan, n.Router).BFDPeers(ctx)
		if err != nil {
			return r, err
		}
		state := "absent"
		for _, p := range peers {
			if a, err := netip.ParseAddr(p.Peer); err == nil && a == n.SpeakerAddress {
				state = p.Status
			}
		}
		if state != "up" {
			r.fail(kindBFDDown, "%s: BFD with %s's speaker (%s) is %s", n.Router, n.Name, n.SpeakerAddress, state)
		} else {
			up++
		}
	}
	r.figure("bfd_up", float64(up))
	return r, nil
}
