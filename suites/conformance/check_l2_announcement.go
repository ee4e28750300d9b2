package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/faults"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/reports"
)

// kindDuplicateOwner: more than one link-layer address answered for a VIP.
const (
	kindDuplicateOwner = "duplicate-owner"
	kindNotElected     = "owner-not-elected" // the node answering is not the one MetalLB elected
)

// On a layer 2 segment (announcer metallb-l2), every application's VIP is answered by
// exactly one node: the router forgets the VIP's neighbor entry, the client sends to
// the VIP, and on the router's segment port the router's Neighbor Solicitation gets
// Neighbor Advertisements from one MAC only — a node's segment port, the node whose
// speaker alone says it announces the VIP (metallb_speaker_announced) — and every
// probe is answered from the VIP. Control: a second node
// answers for the first application's VIP too (kernel proxy NDP on its segment port):
// two MACs answer.
func l2Announcement() Check {
	return Check{
		Name:     "l2-announcement",
		Applies:  onSegment,
		Breakage: "a node MetalLB did not elect answers Neighbor Solicitations for the first application's VIP too (proxy NDP on its segment port)",
		Expect:   kindDuplicateOwner,
		Break: func(ctx context.Context, x *Lab) (func(context.Context) error, error) {
			app := x.Plan.Apps[0]
			vip, err := x.VIP(ctx, app.Namespace, EchoName)
			if err != nil {
				return nil, err
			}
			owner, err := x.segmentOwner(ctx, vip)
			if err != nil {
				return nil, err
			}
			var other string
			for _, p := range x.Plan.Segment.Ports {
				if p.Node != owner {
					other = p.Node
					break
				}
			}
			if other == "" {
				return nil, fmt.Errorf("no node besides %s on the segment", owner)
			}
			undo, err := faults.Inject(ctx, x.Faults().ProxyNDP(other, x.Plan.Segment.Port(other).Iface, vip))
			restore := func(ctx context.Context) error {
				if err := undo(); err != nil {
					return err
				}
				// The router may have learned the impostor: it learns the owner again.
				if err := x.forgetNeighbor(ctx, vip); err != nil {
					return err
				}
				if got, err := x.segmentOwner(ctx, vip); err != nil || got != owner {
					return fmt.Errorf("after the restore the router reaches %s through %q (%v), not %s", vip, got, err, owner)
				}
				return nil
			}
			return restore, err
		},
		Run: runL2Announcement,
	}
}

func runL2Announcement(ctx context.Context, x *Lab, control bool) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	client := x.Plan.HostByRole("client")
	macs, err := x.segmentMACs(ctx)
	if err != nil {
		return r, err
	}
	pt := x.segmentPoint()
	for _, app := range x.Plan.Apps {
		vip, err := x.VIP(ctx, app.Namespace, EchoName)
		if err != nil {
			return r, err
		}
		if err := x.forgetNeighbor(ctx, vip); err != nil {
			return r, err
		}
		var ps ProbeSummary
		caps, err := x.Capture(ctx, "l2-"+app.Name+suffix(control), capture.Filter{IPv6Only: true}, []string{pt}, func() error {
			var err error
			ps, err = x.ProbeUDP(ctx, client.Name, netip.AddrPortFrom(vip, ProbePort), "--count", "20", "--interval", "10ms", "--wait", "500ms")
			// Linux answers a proxied solicitation after a random delay of up to
			// proxy_delay (0.8 s by default): wait it out, so a second answer is seen.
			time.Sleep(time.Second)
			return err
		})
		if err != nil {
			return r, err
		}
		r.pcaps(caps)
		c := caps[pt]
		answers := verdict.NDPAnswers(c.Packets, vip)
		elected, unread := x.announcingNodes(ctx, vip)
		for _, u := range unread {
			r.Evidence = append(r.Evidence, reports.Evidence{Note: "MetalLB metrics not read: " + u})
		}
		var who []string
		for _, a := range answers {
			node := macs[a.MAC]
			if node == "" {
				node = "no node"
			}
			who = append(who, fmt.Sprintf("%s (%s, %d advertisements)", a.MAC, node, a.Count))
			r.Evidence = append(r.Evidence, reports.Evidence{File: c.File, Frame: a.First.Index,
				Note: fmt.Sprintf("%s: Neighbor Advertisement for %s from %s (%s)", app.Name, vip, a.MAC, node)})
		}
		switch {
		case verdict.FirstSolicitation(c.Packets, vip) == nil:
			r.fail(kindNothingSeen, "%s: the router never solicited %s after forgetting it", app.Name, vip)
		case len(answers) == 0:
			r.fail(kindUnanswered, "%s: no node answered the router's solicitation for %s", app.Name, vip)
		case len(answers) > 1:
			r.fail(kindDuplicateOwner, "%s: %d link-layer addresses answered for %s: %s", app.Name, len(answers), vip, strings.Join(who, ", "))
		default:
			owner := macs[answers[0].MAC]
			switch {
			case owner == "":
				r.fail(kindDuplicateOwner, "%s: %s answered for %s, which is no node's segment port", app.Name, answers[0].MAC, vip)
			case len(unread) == 0 && (len(elected) != 1 || elected[0] != owner):
				r.fail(kindNotElected, "%s: %s answered for %s; the speakers announcing it (metallb_speaker_announced): %v", app.Name, owner, vip, elected)
			}
			r.Evidence = append(r.Evidence, reports.Evidence{Note: fmt.Sprintf("%s: %s owns %s on the wire; the speakers announcing it (metallb_speaker_announced): %v", app.Name, owner, vip, elected)})
		}
		if d := verdict.NDPDelay(c.Packets, vip); d >= 0 {
			r.figure("ndp_answer_ms_"+app.Name, float64(d.Microseconds())/1000)
		}
		if ps.Received != ps.Sent || ps.Sent == 0 {
			r.fail(kindUnanswered, "%s: %d of %d UDP probes to %s answered", app.Name, ps.Received, ps.Sent, vip)
		}
		for resp := range ps.Responders {
			if resp != vip.String() {
				r.fail(kindReplyNotFromVIP, "%s: UDP replies came from %s, not the VIP", app.Name, resp)
			}
		}
		r.figure("owners_"+app.Name, float64(len(answers)))
	}
	return r, nil
}
