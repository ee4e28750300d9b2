// Package clab renders the containerlab topology of a lab. The output is a plain
// containerlab topology file that the stock `containerlab deploy -t` accepts; v6lab's
// own deploy path reads the very same file.
package clab

import (
	"bytes"
	"fmt"
	"net/netip"

	yaml "go.yaml.in/yaml/v3"

	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/render/frr"
)

// Topology is the subset of containerlab's topology schema that v6lab uses.
type Topology struct {
	Name   string `yaml:"name"`
	Prefix string `yaml:"prefix"`
	Mgmt   Mgmt   `yaml:"mgmt"`
	Topo   Topo   `yaml:"topology"`
}

// Mgmt is the management network: ULA for IPv6, a docker-chosen IPv4 subnet ("auto";
// the engine cannot create an IPv6-only network). It is never a data plane.
type Mgmt struct {
	Network    string `yaml:"network"`
	IPv4Subnet string `yaml:"ipv4-subnet"`
	IPv6Subnet string `yaml:"ipv6-subnet"`
}

// Topo holds nodes and links.
type Topo struct {
	Nodes map[string]Node `yaml:"nodes"`
	Links []Link          `yaml:"links"`
}

// Node is one containerlab node (always kind linux here).
type Node struct {
	Kind       string            `yaml:"kind"`
	Image      string            `yaml:"image"`
	Entrypoint string            `yaml:"entrypoint,omitempty"`
	Cmd        string            `yaml:"cmd,omitempty"`
	Binds      []string          `yaml:"binds,omitempty"`
	Exec       []string          `yaml:"exec,omitempty"`
	Env        map[string]string `yaml:"env,omitempty"`
	Labels     map[string]string `yaml:"labels,omitempty"`
	Sysctls    map[string]string `yaml:"sysctls,omitempty"`
	Group      string            `yaml:"group,omitempty"`
	MgmtIPv6   string            `yaml:"mgmt-ipv6,omitempty"`
}

// Link is a point-to-point veth.
type Link struct {
	Endpoints [2]string `yaml:"endpoints,flow"`
	MTU       int       `yaml:"mtu,omitempty"` // unset: containerlab's default, spec.MaxLinkMTU
}

// Images names the image each kind of lab member runs.
type Images struct {
	Router string
	Host   string
	Node   string
}

// Label keys put on every container so that v6lab can find its labs.
const (
	LabelLab  = "v6lab.dev/lab"
	LabelRole = "v6lab.dev/role"
	LabelKind = "v6lab.dev/member"
)

// FileName is the topology file name for a lab.
func FileName(p *plan.Plan) string { return p.Lab + ".clab.yml" }

// FRRDir is where a router's FRR files live, relative to the topology file.
func FRRDir(router string) string { return "frr/" + router }

// NodeExtras are what a Kubernetes distribution adds to its node containers.
type NodeExtras struct {
	Binds      []string
	Entrypoint string
	Cmd        string
}

// Build makes the topology of a lab. extras adds per-node binds and command (the
// distribution's: k3s config and role, or the upstream node's files).
func Build(p *plan.Plan, img Images, extras func(plan.KubeNode) NodeExtras) Topology {
	t := Topology{
		Name:   p.Lab,
		Prefix: "v6lab",
		Mgmt:   Mgmt{Network: p.Management.Network, IPv4Subnet: "auto", IPv6Subnet: p.Management.IPv6Subnet.String()},
		Topo:   Topo{Nodes: map[string]Node{}},
	}
	labels := func(kind, role string) map[string]string {
		return map[string]string{LabelLab: p.Lab, LabelKind: kind, LabelRole: role}
	}
	for _, r := range p.Routers {
		dir := FRRDir(r.Name)
		t.Topo.Nodes[r.Name] = Node{
			Kind:  "linux",
			Image: img.Router,
			Binds: []string{
				dir + "/frr.conf:/etc/frr/frr.conf",
				dir + "/daemons:/etc/frr/daemons",
				dir + "/vtysh.conf:/etc/frr/vtysh.conf",
				dir + "/start:" + frr.StartPath + ":ro",
			},
			Cmd:  "sh " + frr.StartPath,
			Exec: []string{isolateMgmt},
			// Routers keep their addresses while a link is down, as hardware routers do
			// (Linux drops IPv6 addresses on link down by default, and zebra does not put
			// them back), and use them as soon as the link is back: no duplicate address
			// detection on lab links, whose addresses the plan makes unique (DAD would add
			// a second of outage to every link flap). net.* sysctls are per namespace.
			Sysctls: map[string]string{
				"net.ipv6.conf.all.keep_addr_on_down":     "1",
				"net.ipv6.conf.default.keep_addr_on_down": "1",
				"net.ipv6.conf.all.accept_dad":            "0",
				"net.ipv6.conf.default.accept_dad":        "0",
			},
			Labels: labels("router", string(r.Role)),
			Group:  "routers",
		}
	}
	for _, h := range p.Hosts {
		t.Topo.Nodes[h.Name] = Node{
			Kind:   "linux",
			Image:  img.Host,
			Exec:   append([]string{isolateMgmt}, addressExec(h.Iface, []netip.Prefix{netip.PrefixFrom(h.Address, h.Subnet.Bits())}, h.Gateway)...),
			Labels: labels("host", string(h.Role)),
			Group:  "hosts",
		}
	}
	for _, n := range p.KubeNodes {
		node := Node{
			Kind:  "linux",
			Image: img.Node,
			Exec: append(append([]string{isolateMgmt}, addressExec(n.Iface, []netip.Prefix{
				netip.PrefixFrom(n.Address, n.Link.Bits())}, n.Gateway)...),
				// The speaker address is deprecated (preferred_lft 0): MetalLB binds it
				// explicitly, and nothing else ever picks it as a source.
				fmt.Sprintf("ip -6 addr add %s dev %s nodad preferred_lft 0", netip.PrefixFrom(n.SpeakerAddress, n.Link.Bits()), n.Iface)),
			Labels: labels("node", string(n.Role)),
			Group:  "nodes",
		}
		if port := p.Segment.Port(n.Name); port != nil {
			// The segment carries no default route: the node's traffic leaves by its
			// router link; only what MetalLB draws to a VIP arrives here.
			node.Exec = append(node.Exec, fmt.Sprintf("ip -6 addr add %s dev %s nodad", netip.PrefixFrom(port.Address, p.Segment.Subnet.Bits()), port.Iface))
		}
		if extras != nil {
			x := extras(n)
			node.Binds, node.Entrypoint, node.Cmd = x.Binds, x.Entrypoint, x.Cmd
		}
		t.Topo.Nodes[n.Name] = node
	}
	if seg := p.Segment; seg != nil {
		t.Topo.Nodes[seg.Switch] = switchNode(seg, img.Host, labels("switch", "segment"))
	}
	for name, node := range t.Topo.Nodes {
		if a, ok := p.Management.Addresses[name]; ok {
			node.MgmtIPv6 = a.String()
			t.Topo.Nodes[name] = node
		}
	}
	for _, l := range p.Links {
		t.Topo.Links = append(t.Topo.Links, Link{Endpoints: [2]string{
			l.A.Node + ":" + l.A.Iface, l.B.Node + ":" + l.B.Iface}, MTU: l.MTU})
	}
	return t
}

// switchNode is the layer 2 segment: the host image, whose network namespace holds a
// bridge of all its lab ports (nothing is created on the host). Multicast snooping is
// off, so Neighbor Solicitations reach every port whether or not the nodes' speakers
// sent MLD reports; the bridge itself has no address and the switch no route. The
// nodes' ports get no unknown unicast (flood off), as on a switch that blocks it:
// frames for a MAC the bridge has not learnt (a stopped node's) reach the router's
// port only, never another node — whose Cilium would otherwise balance what was sent
// to the VIP's old owner, and hide that the owner is gone.
func switchNode(seg *plan.Segment, image string, labels map[string]string) Node {
	exec := []string{isolateMgmt,
		"ip link add br0 type bridge mcast_snooping 0",
		"sh -c 'echo 1 > /proc/sys/net/ipv6/conf/br0/disable_ipv6'",
		fmt.Sprintf("ip link set %s master br0 up", seg.SwitchIface)}
	for _, port := range seg.Ports {
		exec = append(exec, fmt.Sprintf("ip link set %s master br0 up", port.SwitchIface),
			fmt.Sprintf("ip link set %s type bridge_slave flood off", port.SwitchIface))
	}
	exec = append(exec, "ip link set br0 up")
	return Node{Kind: "linux", Image: image, Exec: exec, Labels: labels, Group: "switches"}
}

// isolateMgmt removes the default routes docker gives eth0 (IPv6, and IPv4 through the
// engine's NAT), so that nothing in the lab can route out through the management
// network: it stays reachable on-link only, from the host.
const isolateMgmt = `sh -c "ip -6 route del default dev eth0 2>/dev/null; ip -4 route del default dev eth0 2>/dev/null; true"`

// addressExec configures a host or node data interface: its addresses (nodad: the
// plan guarantees uniqueness) and a default route into the lab via its router.
func addressExec(iface string, addrs []netip.Prefix, gw netip.Addr) []string {
	var cmds []string
	for _, a := range addrs {
		cmds = append(cmds, fmt.Sprintf("ip -6 addr add %s dev %s nodad", a, iface))
	}
	return append(cmds, fmt.Sprintf("ip -6 route replace default via %s dev %s", gw, iface))
}

// Marshal renders a topology as YAML.
func Marshal(t Topology) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# Rendered by v6lab. Deployable as is with: containerlab deploy -t " + t.Name + ".clab.yml\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(t); err != nil {
		return nil, fmt.Errorf("encoding topology: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
