package frr

import (
	"encoding/json"
	"fmt"
	"sort"
)

// Session is one BGP session as a router sees it (from vtysh JSON, never screen text).
type Session struct {
	Router   string `json:"router"`
	Peer     string `json:"peer"`
	Hostname string `json:"hostname,omitempty"`
	RemoteAS uint32 `json:"remoteAS"`
	State    string `json:"state"`
	UptimeMs int64  `json:"uptimeMs"`
	Received int    `json:"prefixesReceived"`
	Sent     int    `json:"prefixesSent"`
}

// Established reports whether the session is up.
func (s Session) Established() bool { return s.State == "Established" }

// ParseSummary parses `show bgp ipv6 summary json`.
func ParseSummary(router string, data []byte) ([]Session, error) {
	var doc struct {
		IPv6Unicast *struct {
			Peers map[string]struct {
				Hostname       string `json:"hostname"`
				RemoteAs       uint32 `json:"remoteAs"`
				State          string `json:"state"`
				PeerUptimeMsec int64  `json:"peerUptimeMsec"`
				PfxRcd         int    `json:"pfxRcd"`
				PfxSnt         int    `json:"pfxSnt"`
			} `json:"peers"`
		} `json:"ipv6Unicast"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: bgp summary: %w", router, err)
	}
	if doc.IPv6Unicast == nil {
		// FRR prints {} when no IPv6 unicast session is configured.
		return nil, nil
	}
	var out []Session
	for peer, p := range doc.IPv6Unicast.Peers {
		out = append(out, Session{Router: router, Peer: peer, Hostname: p.Hostname, RemoteAS: p.RemoteAs,
			State: p.State, UptimeMs: p.PeerUptimeMsec, Received: p.PfxRcd, Sent: p.PfxSnt})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out, nil
}

// Route is one prefix a router learned by BGP, with its best path's next hops.
type Route struct {
	Router   string   `json:"router"`
	Prefix   string   `json:"prefix"`
	NextHops []string `json:"nextHops"`
	ASPath   string   `json:"asPath"`
	Multi    int      `json:"paths"`
}

// ParseRoutes parses `show bgp ipv6 unicast json`, keeping prefixes learned from a peer
// (local and redistributed ones are left out).
func ParseRoutes(router string, data []byte) ([]Route, error) {
	var doc struct {
		Routes map[string][]struct {
			Valid    bool   `json:"valid"`
			Bestpath bool   `json:"bestpath"`
			Multi    bool   `json:"multipath"`
			Path     string `json:"path"`
			PeerID   string `json:"peerId"`
			Nexthops []struct {
				IP        string `json:"ip"`
				Interface string `json:"interface"`
				Scope     string `json:"scope"`
			} `json:"nexthops"`
		} `json:"routes"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: bgp routes: %w", router, err)
	}
	var out []Route
	for prefix, paths := range doc.Routes {
		r := Route{Router: router, Prefix: prefix}
		for _, p := range paths {
			if !p.Valid || p.PeerID == "" || p.PeerID == "(unspec)" {
				continue
			}
			if p.Bestpath || p.Multi {
				r.Multi++
				if p.Bestpath {
					r.ASPath = p.Path
				}
				for _, nh := range p.Nexthops {
					if nh.Scope == "link-local" && len(p.Nexthops) > 1 {
						continue // the global next hop says more
					}
					hop := nh.IP
					if nh.Interface != "" {
						hop += "%" + nh.Interface
					}
					r.NextHops = append(r.NextHops, hop)
				}
			}
		}
		if r.Multi > 0 {
			sort.Strings(r.NextHops)
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Prefix < out[j].Prefix })
	return out, nil
}
