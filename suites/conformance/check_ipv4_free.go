package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/verdict"
)

// kindIPv4OnDataLink: an IPv4 (or ARP) frame on a data link of an IPv6-only lab.
const kindIPv4OnDataLink = "ipv4-on-data-link"

// ipv4FreePort is the world host's UDP port the pods' probes of ipv4-free go to:
// nothing serves it (the lab's ports: lab.go), and no other check counts it.
const ipv4FreePort = 9009

// The lab is IPv6-only on the wire: while pods send to the world host and the client
// talks to a VIP (the DSR backend's SNAT Service), every data link — each node's
// uplink, each host's link and each fabric link — carries frames, and none of them is
// IPv4 or ARP (judged by EtherType, VLAN-tagged and malformed frames included; the
// captures have no filter that could hide them).
// Control: an IPv4 address on each end of the client's link (TEST-NET-1, 192.0.2.0/24,
// on that link only) and a ping across it.
func ipv4Free() Check {
	const clientV4, routerV4 = "192.0.2.2/24", "192.0.2.1/24"
	return Check{
		Name:         "ipv4-free",
		Concurrent:   withPolicies,
		ControlGroup: disjointBreaks,
		Applies:      always,
		Breakage:     "IPv4 addresses (192.0.2.0/24) on both ends of the client's link and a ping across it",
		Expect:       kindIPv4OnDataLink,
		Break: func(ctx context.Context, x *Lab) (func(context.Context) error, error) {
			client := x.Plan.HostByRole("client")
			ends := [][2]string{{client.Name, client.Iface}, {client.Router, client.RouterIface}}
			restore := func(ctx context.Context) error {
				_, _ = x.Exec(ctx, client.Name, "pkill", "-f", "ping -4")
				for i, e := range ends {
					addr := []string{clientV4, routerV4}[i]
					// A failed delete (the address never added: a control interrupted
					// before it) is judged by what the link holds afterwards.
					_, delErr := x.Exec(ctx, e[0], "ip", "-4", "addr", "del", addr, "dev", e[1])
					// Restored only when no IPv4 address is left on the link.
					if out, err := x.Exec(ctx, e[0], "ip", "-4", "-o", "addr", "show", "dev", e[1]); err != nil || strings.TrimSpace(out) != "" {
						return fmt.Errorf("%s:%s still has IPv4: %q (%v; delete: %v)", e[0], e[1], out, err, delErr)
					}
				}
				return nil
			}
			for i, e := range ends {
				if _, err := x.Exec(ctx, e[0], "ip", "-4", "addr", "add", []string{clientV4, routerV4}[i], "dev", e[1]); err != nil {
					return restore, err
				}
			}
			// In effect once the far end answers over IPv4.
			if _, err := x.Exec(ctx, client.Name, "ping", "-4", "-c", "1", "-W", "2", strings.Split(routerV4, "/")[0]); err != nil {
				return restore, err
			}
			_, err := run(ctx, "docker", []string{"exec", "-d", x.Plan.ContainerName(client.Name), "ping", "-4", "-i", "0.2", strings.Split(routerV4, "/")[0]}, "")
			return restore, err
		},
		Run: func(ctx context.Context, x *Lab, control bool) (Result, error) {
			r := Result{Pass: true, Reason: "ok"}
			if err := x.StartResponder(ctx); err != nil {
				return r, err
			}
			points := dataLinks(x)
			// The DSR backend's SNAT Service: a VIP no other control of its group
			// (ControlGroup) probes.
			vip, err := x.VIP(ctx, x.Plan.Apps[0].Namespace, SNATSvc)
			if err != nil {
				return r, err
			}
			pods, err := x.Pods(ctx, x.Plan.Apps[0].Namespace, EchoName)
			if err != nil {
				return r, err
			}
			world := x.Plan.HostByRole("world")
			client := x.Plan.HostByRole("client")
			// No filter: every frame of every data link, whatever its EtherType.
			caps, err := x.Capture(ctx, "ipv4-free"+suffix(control), capture.Filter{}, points, func() error {
				for _, p := range pods {
					// To a port of the world host nothing listens on: the frames are
					// what the check needs (the host answers with Port Unreachable), and
					// no check that counts probes to the world host's probe port
					// (ProbePort) runs beside it counts these.
					if _, err := x.PodExec(ctx, p, "v6lab-probe", "send", "--to", netip.AddrPortFrom(world.Address, ipv4FreePort).String(),
						"--count", "20", "--interval", "10ms", "--wait", "200ms"); err != nil {
						return err
					}
				}
				_, err := x.ProbeUDP(ctx, client.Name, netip.AddrPortFrom(vip, ProbePort), "--count", "50", "--interval", "10ms", "--wait", "200ms")
				time.Sleep(time.Second) // a second of the links' own traffic (BGP keepalives, ND)
				return err
			})
			if err != nil {
				return r, err
			}
			r.pcaps(caps)
			frames, v4 := 0, 0
			for _, pt := range points {
				c := caps[pt]
				v := verdict.IPv4(c.Packets)
				frames += v.Frames
				v4 += v.IPv4
				if v.IPv4 > 0 {
					r.fail(kindIPv4OnDataLink, "%s: %d of %d frames are IPv4 or ARP", pt, v.IPv4, v.Frames)
					r.Evidence = append(r.Evidence, Evidence(c.File, v.Evidence[:min(len(v.Evidence), 5)])...)
				}
			}
			r.figure("links", float64(len(points)))
			r.figure("frames", float64(frames))
			r.figure("ipv4_frames", float64(v4))
			return r, nil
		},
	}
}

// dataLinks are capture points covering every data link of the lab once: each node's
// uplink, each host's link, one end of each fabric link, and the layer 2 segment's
// router port (which every broadcast and multicast on the segment reaches, IPv4's ARP
// included).
func dataLinks(x *Lab) []string {
	var points []string
	for _, n := range x.Plan.KubeNodes {
		points = append(points, x.Uplink(n.Name))
	}
	for _, h := range x.Plan.Hosts {
		points = append(points, h.Name+":"+h.Iface)
	}
	for _, l := range x.Plan.Links {
		if l.Kind == plan.LinkFabric {
			points = append(points, l.A.Node+":"+l.A.Iface)
		}
	}
	if x.Plan.Segment != nil {
		points = append(points, x.segmentPoint())
	}
	return points
}
