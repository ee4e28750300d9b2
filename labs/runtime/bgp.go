package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"v6lab.dev/v6lab/labs/frr"
	"v6lab.dev/v6lab/labs/plan"
)

// expectedSessions are the sessions each router must have Established: its fabric
// links, plus its node links once Kubernetes nodes are deployed.
func expectedSessions(p *plan.Plan, deployed map[string]bool) map[string][]string {
	out := map[string][]string{}
	for _, r := range p.Routers {
		for _, i := range r.Interfaces {
			switch {
			case i.Kind == plan.LinkFabric:
				out[r.Name] = append(out[r.Name], i.Name)
			case i.Kind == plan.LinkNode && deployed[i.Peer]:
				out[r.Name] = append(out[r.Name], i.PeerAddr.String())
			}
			if i.Kind == plan.LinkNode && deployed[speakerMember(i.Peer)] {
				for _, n := range p.KubeNodes {
					if n.Name == i.Peer {
						out[r.Name] = append(out[r.Name], n.SpeakerAddress.String())
					}
				}
			}
		}
	}
	return out
}

// waitBGP waits until every expected session is Established; on timeout the error is a
// diagnosis: each session that is not up, its state, and the router's last log lines.
// Sessions to nodes are expected once a BGP speaker runs on them (Cilium, MetalLB).
func waitBGP(ctx context.Context, p *plan.Plan, timeout time.Duration) (int, error) {
	return waitBGPWith(ctx, p, Members(p, true), timeout)
}

// waitBGPWith is waitBGP with sessions to the given members' speakers expected too.
func waitBGPWith(ctx context.Context, p *plan.Plan, members []string, timeout time.Duration) (int, error) {
	deployed := map[string]bool{}
	for _, m := range members {
		deployed[m] = true
	}
	want := expectedSessions(p, deployed)
	deadline := time.Now().Add(timeout)
	for {
		var down []frr.Session
		total := 0
		for _, r := range p.Routers {
			ss, err := Router(p, r.Name).Sessions(ctx)
			state := map[string]frr.Session{}
			for _, s := range ss {
				state[s.Peer] = s
			}
			for _, peer := range want[r.Name] {
				total++
				s, ok := state[peer]
				if err != nil || !ok {
					s = frr.Session{Router: r.Name, Peer: peer, State: "absent"}
				}
				if !s.Established() {
					down = append(down, s)
				}
			}
		}
		if len(down) == 0 {
			return total, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return total, diagnose(ctx, p, down, timeout)
		}
		time.Sleep(time.Second)
	}
}

func diagnose(ctx context.Context, p *plan.Plan, down []frr.Session, timeout time.Duration) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%d BGP session(s) not Established after %s:", len(down), timeout)
	routers := map[string]bool{}
	for _, s := range down {
		fmt.Fprintf(&b, "\n  %s -> %s: %s", s.Router, s.Peer, s.State)
		routers[s.Router] = true
	}
	for r := range routers {
		logs := Router(p, r).LogTail(ctx, 15)
		fmt.Fprintf(&b, "\n  last FRR log lines of %s:\n    %s", r, strings.ReplaceAll(logs, "\n", "\n    "))
	}
	return errors.New(b.String())
}
