package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/labs/verdict"
)

// The layer 2 segment of a metallb-l2 lab: whose MAC is whose, who owns a VIP.

// onSegment says why a check of the layer 2 segment does not apply.
func onSegment(x *Lab) string {
	if x.Plan.Segment == nil {
		return "the lab has no layer 2 segment (announcer metallb-l2): its VIPs are routed by BGP"
	}
	return ""
}

// routedVIPs says why a check of VIPs reached through BGP routes (steered, withdrawn,
// captured on the nodes' router links) does not apply: on a layer 2 segment MetalLB
// elects one node per VIP and the router reaches it by neighbor discovery
// (l2-announcement and l2-failover judge that).
func routedVIPs(x *Lab) string {
	if x.Lab.Spec.Spec.LoadBalancer.Announcer == spec.AnnouncerMetalLBL2 {
		return "the lab's VIPs are announced by MetalLB's layer 2 mode (NDP on the segment), not routed by BGP: l2-announcement and l2-failover judge them"
	}
	return ""
}

// segmentPoint is the capture point on the segment: the router's port, which sees the
// router's solicitations, every node's advertisements and the traffic to the VIPs.
func (x *Lab) segmentPoint() string {
	return x.Plan.Segment.Router + ":" + x.Plan.Segment.RouterIface
}

// segmentMACs maps each node's segment interface's MAC to the node (read from the
// node's kernel).
func (x *Lab) segmentMACs(ctx context.Context) (map[verdict.MAC]string, error) {
	out := map[verdict.MAC]string{}
	for _, port := range x.Plan.Segment.Ports {
		s, err := x.Exec(ctx, port.Node, "cat", "/sys/class/net/"+port.Iface+"/address")
		if err != nil {
			return nil, err
		}
		hw, err := net.ParseMAC(strings.TrimSpace(s))
		if err != nil || len(hw) != 6 {
			return nil, fmt.Errorf("%s:%s: MAC %q: %v", port.Node, port.Iface, strings.TrimSpace(s), err)
		}
		out[verdict.MAC(hw)] = port.Node
	}
	return out, nil
}

// forgetNeighbor removes the router's neighbor entry for a VIP, so that the next packet
// to it makes the router solicit it again (on the capture).
func (x *Lab) forgetNeighbor(ctx context.Context, vip netip.Addr) error {
	seg := x.Plan.Segment
	_, err := x.Exec(ctx, seg.Router, "ip", "-6", "neigh", "flush", "to", vip.String(), "dev", seg.RouterIface)
	return err
}

// routerNeighbor is the MAC the router's neighbor table holds for a VIP (zero: none).
func (x *Lab) routerNeighbor(ctx context.Context, vip netip.Addr) (verdict.MAC, error) {
	seg := x.Plan.Segment
	out, err := x.Exec(ctx, seg.Router, "ip", "-j", "-6", "neigh", "show", "to", vip.String(), "dev", seg.RouterIface)
	if err != nil {
		return verdict.MAC{}, err
	}
	var entries []struct {
		Dst    string `json:"dst"`
		LLAddr string `json:"lladdr"`
	}
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		return verdict.MAC{}, fmt.Errorf("%s: ip -j neigh: %w", seg.Router, err)
	}
	for _, e := range entries {
		if hw, err := net.ParseMAC(e.LLAddr); err == nil && len(hw) == 6 {
			return verdict.MAC(hw), nil
		}
	}
	return verdict.MAC{}, nil
}

// segmentOwner is the node the router reaches a VIP through: a few probes from the
// client, then the router's neighbor entry for it.
func (x *Lab) segmentOwner(ctx context.Context, vip netip.Addr) (string, error) {
	client := x.Plan.HostByRole(spec.RoleClient)
	if _, err := x.ProbeUDP(ctx, client.Name, netip.AddrPortFrom(vip, ProbePort), "--count", "3", "--interval", "10ms", "--wait", "500ms"); err != nil {
		return "", err
	}
	mac, err := x.routerNeighbor(ctx, vip)
	if err != nil {
		return "", err
	}
	macs, err := x.segmentMACs(ctx)
	if err != nil {
		return "", err
	}
	node, ok := macs[mac]
	if !ok {
		return "", fmt.Errorf("%s reaches %s through %s, which is no node's segment port", x.Plan.Segment.Router, vip, mac)
	}
	return node, nil
}

// announcingNodes are the nodes whose MetalLB speaker says it announces vip
// (metallb_speaker_announced, from each speaker's metrics): MetalLB's own report of
// its election, compared with the wire. Speakers that could not be read are named in
// unread.
func (x *Lab) announcingNodes(ctx context.Context, vip netip.Addr) (nodes, unread []string) {
	series, errs := x.metallbSeries(ctx)
	want := `ip="` + vip.String() + `"`
	for _, n := range keys(series) {
		for k, v := range series[n] {
			if v == 1 && strings.HasPrefix(k, "metallb_speaker_announced{") && strings.Contains(k, want) && strings.Contains(k, `protocol="layer2"`) {
				nodes = append(nodes, n)
				break
			}
		}
	}
	return nodes, errs
}
