package conformance

import (
	"context"
	"net/netip"

	"v6lab.dev/v6lab/labs/faults"
	"v6lab.dev/v6lab/labs/runtime"
	"v6lab.dev/v6lab/labs/spec"
)

// With BFD in the spec, every router has an up BFD session with each MetalLB speaker it
// peers with (vtysh `show bfd peers json`). Control: one router drops the BFD packets of one node's link.
func bfdSessions() Check {
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
		// MetalLB v0.15.2 keeps BFD on a session whose BGPPeer loses its bfdProfile
		// (with the default timers): the earlier control, which removed the profile,
		// passed only on the session's restart during the reload.
		Breakage: "the first node's router drops the BFD packets it receives from that node's link (BGP and routes otherwise untouched)",
		Expect:   kindBFDDown,
		Break: func(ctx context.Context, x *Lab) (func(context.Context) error, error) {
			n := x.Plan.KubeNodes[0]
			undo, err := faults.Inject(ctx, x.Faults().DropBFD(n.Router, n.RouterIface, "v6lab_bfd"))
			restore := func(ctx context.Context) error {
				if err := undo(); err != nil {
					return err
				}
				if err := restored(ctx, x, "BFD", bfdOnce); err != nil {
					return err
				}
				// BFD down took the node's BGP session down with it: back when the
				// routers route through the node again.
				return restored(ctx, x, "the routes", routesOnce)
			}
			return restore, err
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
