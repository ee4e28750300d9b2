// Package frr is v6lab's one place for FRR: every vtysh call a lab's routers get, and
// every parser of FRR's JSON (never screen text), unit-tested on output captured from
// FRR 8.4 in v6lab labs (testdata/). The runtime, `v6lab status` and the suites use it.
package frr

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"v6lab.dev/v6lab/labs/xexec"
)

// LogFile is where the rendered FRR config logs, inside each router.
const LogFile = "/var/log/frr/frr.log"

// Router is one FRR router of a lab, reached through its container.
type Router struct {
	Name      string // the lab member
	Container string
}

// Timeout bounds every vtysh call.
const Timeout = 20 * time.Second

func (r Router) exec(ctx context.Context, args ...string) (string, error) {
	out, err := xexec.Run(ctx, xexec.Cmd{Name: "docker", Args: append([]string{"exec", r.Container}, args...), Timeout: Timeout})
	if err != nil {
		return out, fmt.Errorf("%s: %w", r.Name, err)
	}
	return out, nil
}

// Show runs one vtysh show command and returns its output; an error from vtysh (or
// docker) is an error, never an empty answer.
func (r Router) Show(ctx context.Context, command string) ([]byte, error) {
	out, err := r.exec(ctx, "vtysh", "-c", command)
	return []byte(out), err
}

// Configure runs configuration lines (each one vtysh -c, after configure terminal).
func (r Router) Configure(ctx context.Context, lines ...string) error {
	args := []string{"vtysh", "-c", "configure terminal"}
	for _, l := range lines {
		args = append(args, "-c", l)
	}
	_, err := r.exec(ctx, args...)
	return err
}

// Sessions are the router's IPv6 BGP sessions.
func (r Router) Sessions(ctx context.Context) ([]Session, error) {
	data, err := r.Show(ctx, "show bgp ipv6 summary json")
	if err != nil {
		return nil, err
	}
	return ParseSummary(r.Name, data)
}

// Routes are the prefixes the router learned by BGP.
func (r Router) Routes(ctx context.Context) ([]Route, error) {
	data, err := r.Show(ctx, "show bgp ipv6 unicast json")
	if err != nil {
		return nil, err
	}
	return ParseRoutes(r.Name, data)
}

// FIB is the router's IPv6 routing table as zebra has it (`show ipv6 route json`):
// what is installed, not only what BGP chose.
func (r Router) FIB(ctx context.Context) ([]FIBRoute, error) {
	data, err := r.Show(ctx, "show ipv6 route json")
	if err != nil {
		return nil, err
	}
	return ParseFIB(r.Name, data)
}

// PathsVia reports whether the router's BGP paths toward prefix include one learned
// from, or through, addr.
func (r Router) PathsVia(ctx context.Context, prefix netip.Prefix, addr netip.Addr) (bool, error) {
	data, err := r.Show(ctx, "show bgp ipv6 unicast "+prefix.String()+" json")
	if err != nil {
		return false, err
	}
	return ParsePathsVia(r.Name, data, addr)
}

// BFDPeers are the router's BFD sessions.
func (r Router) BFDPeers(ctx context.Context) ([]BFDPeer, error) {
	data, err := r.Show(ctx, "show bfd peers json")
	if err != nil {
		return nil, err
	}
	return ParseBFDPeers(r.Name, data)
}

// LogTail is the last n lines of the router's FRR log (for diagnoses; "" when
// unreadable).
func (r Router) LogTail(ctx context.Context, n int) string {
	out, _ := r.exec(ctx, "tail", "-n", fmt.Sprint(n), LogFile)
	return strings.TrimSpace(out)
}

// FIBRoute is one prefix of zebra's table with its selected entry.
type FIBRoute struct {
	Router    string   `json:"router"`
	Prefix    string   `json:"prefix"`
	Protocol  string   `json:"protocol"` // bgp, connected, kernel, ...
	Installed bool     `json:"installed"`
	NextHops  []string `json:"nextHops"` // the next hops installed in the kernel (fib): the ECMP width
}

// ParseFIB parses `show ipv6 route json`, keeping each prefix's selected entry and its
// next hops that are in the kernel's table.
func ParseFIB(router string, data []byte) ([]FIBRoute, error) {
	var doc map[string][]struct {
		Prefix    string `json:"prefix"`
		Protocol  string `json:"protocol"`
		Selected  bool   `json:"selected"`
		Installed bool   `json:"installed"`
		Nexthops  []struct {
			FIB       bool   `json:"fib"`
			IP        string `json:"ip"`
			Interface string `json:"interfaceName"`
			Directly  bool   `json:"directlyConnected"`
		} `json:"nexthops"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: show ipv6 route json: %w", router, err)
	}
	var out []FIBRoute
	for prefix, entries := range doc {
		for _, e := range entries {
			if !e.Selected {
				continue
			}
			r := FIBRoute{Router: router, Prefix: prefix, Protocol: e.Protocol, Installed: e.Installed}
			for _, nh := range e.Nexthops {
				if !nh.FIB {
					continue
				}
				hop := nh.IP
				if hop == "" {
					hop = "direct"
				}
				if nh.Interface != "" {
					hop += "%" + nh.Interface
				}
				r.NextHops = append(r.NextHops, hop)
			}
			sort.Strings(r.NextHops)
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Prefix < out[j].Prefix })
	return out, nil
}

// ParsePathsVia reads `show bgp ipv6 unicast PREFIX json` ({} when the prefix is
// unknown): whether a path was learned from, or goes through, addr.
func ParsePathsVia(router string, data []byte, addr netip.Addr) (bool, error) {
	var d struct {
		Paths []struct {
			Peer struct {
				PeerID string `json:"peerId"`
			} `json:"peer"`
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return false, fmt.Errorf("%s: show bgp ipv6 unicast PREFIX json: %w", router, err)
	}
	for _, p := range d.Paths {
		if a, err := netip.ParseAddr(p.Peer.PeerID); err == nil && a == addr {
			return true, nil
		}
		for _, n := range p.Nexthops {
			if a, err := netip.ParseAddr(n.IP); err == nil && a == addr {
				return true, nil
			}
		}
	}
	return false, nil
}

// BFDPeer is one BFD session.
type BFDPeer struct {
	Router string `json:"router"`
	Peer   string `json:"peer"`
	Status string `json:"status"` // up, down, init, ...
}

// ParseBFDPeers parses `show bfd peers json`.
func ParseBFDPeers(router string, data []byte) ([]BFDPeer, error) {
	var peers []struct {
		Peer   string `json:"peer"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(data, &peers); err != nil {
		return nil, fmt.Errorf("%s: show bfd peers json: %w", router, err)
	}
	out := make([]BFDPeer, 0, len(peers))
	for _, p := range peers {
		out = append(out, BFDPeer{Router: router, Peer: p.Peer, Status: p.Status})
	}
	return out, nil
}
