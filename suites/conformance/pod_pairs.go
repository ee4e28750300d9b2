package conformance

import (
	"fmt"
	"net/netip"
	"time"
)

// podPair is one exchange the check asserts it covered.
type podPair struct {
	name string // e.g. "app-a -> app-b (across nodes)"
	from Pod
	to   netip.AddrPort
	// points are where the requests and their replies must be seen: at each of them
	// (an exchange across nodes, or to the world: the uplinks it crosses), or, with
	// union, at them together (on one node: the sender's veth shows the requests, the
	// receiver's the replies; Cilium delivers into a local pod past its veth's taps).
	points     []string
	union      bool
	start, end time.Time
}

// podPairs are the exchanges the check covers: every application to every other one,
// across nodes and on one node, each way, and every application to the world host.
// A pair the workload cannot provide is returned as missing.
func podPairs(x *Lab, pods map[string][]Pod, ifaces map[netip.Addr]string) (pairs []podPair, missing []string) {
	world := x.Plan.HostByRole("world")
	for _, a := range x.Plan.Apps {
		for _, b := range x.Plan.Apps {
			if a.Name == b.Name {
				continue
			}
			for _, across := range []bool{true, false} {
				kind := "on one node"
				if across {
					kind = "across nodes"
				}
				name := fmt.Sprintf("%s -> %s (%s)", a.Name, b.Name, kind)
				var found *podPair
				for _, from := range pods[a.Name] {
					for _, to := range pods[b.Name] {
						if (from.Node != to.Node) != across || found != nil {
							continue
						}
						pp := podPair{name: name, from: from, to: netip.AddrPortFrom(to.IP, ProbePort)}
						if across {
							pp.points = []string{x.Uplink(from.Node), x.Uplink(to.Node)}
						} else if a, b := ifaces[from.IP], ifaces[to.IP]; a != "" && b != "" {
							pp.points, pp.union = []string{a, b}, true
						} else {
							continue
						}
						found = &pp
					}
				}
				if found == nil {
					missing = append(missing, name)
					continue
				}
				pairs = append(pairs, *found)
			}
		}
		if len(pods[a.Name]) == 0 {
			missing = append(missing, a.Name+" -> world")
			continue
		}
		from := pods[a.Name][0]
		pairs = append(pairs, podPair{name: a.Name + " -> world", from: from, to: netip.AddrPortFrom(world.Address, ProbePort),
			points: []string{x.Uplink(from.Node), x.HostLink("world")}})
	}
	return pairs, missing
}
