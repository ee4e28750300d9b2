// Package plan derives every address, pool, ASN, router-id and interface name of a lab
// from its spec. It is pure and deterministic: the same spec always gives the same plan,
// and appending an application never moves an existing assignment.
//
// The layout follows the seed design (shared/seeds/ipv6-only-k8s-cilium.md) inside the
// parent block P (a /48 by default), one /56 per purpose:
//
//	P:0::/56  node pool   — control /64, worker /64, reserved /64
//	P:1::/56  ingress     — one /64 per application (VIPs)
//	P:a::/56  pods        — default /64, one /64 per application
//	P:b::/56  reserved
//	P:e::/56  external    — one /64 per external host (client, world)
//	P:f::/56  infra       — router loopbacks (/128s of the first /64)
package plan

import (
	"fmt"
	"hash/fnv"
	"net/netip"

	"v6lab.dev/v6lab/labs/spec"
)

// Block indexes (the /56 number inside the parent).
const (
	blockNodes    = 0x0
	blockIngress  = 0x1
	blockPods     = 0xa
	blockReserved = 0xb
	blockExternal = 0xe
	blockInfra    = 0xf
	// MaxParentBits is the longest parent prefix that still holds the sixteen /56 blocks.
	MaxParentBits = 52
)

// Plan is the complete addressing of one lab.
type Plan struct {
	Lab         string       `json:"lab"`
	Parent      netip.Prefix `json:"parent"`
	Nodes       NodeBlock    `json:"nodePool"`
	Ingress     netip.Prefix `json:"ingressBlock"`
	Pods        PodBlock     `json:"podBlock"`
	Reserved    netip.Prefix `json:"reservedBlock"`
	External    netip.Prefix `json:"externalBlock"`
	Infra       netip.Prefix `json:"infraBlock"`
	ServiceCIDR netip.Prefix `json:"serviceCIDR"`
	// ClusterDNS is the cluster DNS Service's ClusterIP (kube-system/kube-dns): the
	// service range's tenth address, as kubeadm and k3s pick it; every kubelet's
	// clusterDNS.
	ClusterDNS  netip.Addr `json:"clusterDNS"`
	PodMaskSize int        `json:"podMaskSize"`
	ClusterASN  uint32     `json:"clusterASN"`
	Management  Management `json:"management"`

	Apps      []App      `json:"applications"`
	Routers   []Router   `json:"routers"`
	KubeNodes []KubeNode `json:"nodes"`
	Hosts     []Host     `json:"hosts"`
	Links     []Link     `json:"links"`
	// Segment is the nodes' shared layer 2 segment (announcer metallb-l2 only).
	Segment      *Segment      `json:"segment,omitempty"`
	Spec         *spec.LabSpec `json:"-"`
	ContainerPfx string        `json:"containerPrefix"`
}

// NodeBlock is the node address pool (/56) and its /64s.
type NodeBlock struct {
	Block    netip.Prefix `json:"block"`
	Control  netip.Prefix `json:"control"`
	Worker   netip.Prefix `json:"worker"`
	Reserved netip.Prefix `json:"reserved"`
}

// PodBlock is the pod pool block (/56) and its default /64.
type PodBlock struct {
	Block   netip.Prefix `json:"block"`
	Default netip.Prefix `json:"default"`
}

// Management is the out-of-band container network (ULA; never a data plane). Each
// member has a fixed address on it, so that certificates can name the API server's.
type Management struct {
	Network    string                `json:"network"`
	IPv6Subnet netip.Prefix          `json:"ipv6Subnet"`
	Addresses  map[string]netip.Addr `json:"addresses"`
}

// App is one application's addressing.
type App struct {
	Name      string       `json:"name"`
	Namespace string       `json:"namespace"`
	ID        int          `json:"id"`
	PodPool   netip.Prefix `json:"podPool"`
	Ingress   netip.Prefix `json:"ingress"`
}

// LinkKind says what a link connects.
type LinkKind string

const (
	LinkFabric LinkKind = "fabric" // router–router, BGP unnumbered (link-local only)
	LinkNode   LinkKind = "node"   // router–Kubernetes node, a /126 from the node pool
	LinkHost   LinkKind = "host"   // router–external host, a /64 from the external block
	// LinkSegment is a port of the layer 2 segment: a router's or a node's interface to
	// the segment's switch, one /64 for all of them.
	LinkSegment LinkKind = "segment"
)

// Segment is a layer 2 segment shared by every Kubernetes node and one router: a lab
// member of its own (Switch), whose bridge joins the ports. MetalLB's layer 2 mode
// answers the router's Neighbor Solicitations for a VIP from the node it elected.
type Segment struct {
	Switch      string       `json:"switch"`
	Subnet      netip.Prefix `json:"subnet"`
	Router      string       `json:"router"`
	RouterIface string       `json:"routerInterface"`
	RouterAddr  netip.Addr   `json:"routerAddress"`
	// SwitchIface is the switch's port to the router.
	SwitchIface string        `json:"switchInterface"`
	Ports       []SegmentPort `json:"ports"`
}

// SegmentPort is one node's interface on the segment.
type SegmentPort struct {
	Node        string     `json:"node"`
	Iface       string     `json:"interface"`
	Address     netip.Addr `json:"address"`
	SwitchIface string     `json:"switchInterface"`
}

// SegmentIface is the nodes' interface on the layer 2 segment.
const SegmentIface = "eth2"

// Port returns a node's port on the segment (nil without a segment or port).
func (s *Segment) Port(node string) *SegmentPort {
	if s == nil {
		return nil
	}
	for i := range s.Ports {
		if s.Ports[i].Node == node {
			return &s.Ports[i]
		}
	}
	return nil
}

// VIPRange is the first and last VIP an application's Services get: from its ingress
// /64, or, on a layer 2 segment, from the application's /112 of the segment's /64
// (segment::<id>:1 to segment::<id>:ffff). Never a prefix's first address: that is the
// Subnet-Router anycast address, which forwarding nodes claim.
func (p *Plan) VIPRange(a App) (first, last netip.Addr) {
	block := p.VIPBlock(a).Masked()
	l := block.Addr().As16()
	l[14], l[15] = 0xff, 0xff
	return block.Addr().Next(), netip.AddrFrom16(l)
}

// VIPBlock is the block an application's VIPs come from: its ingress /64, or its /112
// of the layer 2 segment.
func (p *Plan) VIPBlock(a App) netip.Prefix {
	if p.Segment == nil {
		return a.Ingress
	}
	return netip.PrefixFrom(hostAddr(p.Segment.Subnet, uint64(a.ID)<<16), 112)
}

// Interface is one data interface of a router.
type Interface struct {
	Name      string       `json:"name"`
	Kind      LinkKind     `json:"kind"`
	Peer      string       `json:"peer"`
	PeerIface string       `json:"peerInterface"`
	Address   netip.Prefix `json:"address,omitzero"` // zero on fabric links (link-local only)
	PeerAddr  netip.Addr   `json:"peerAddress,omitzero"`
}

// Router is one FRR router's plan.
type Router struct {
	Name       string          `json:"name"`
	Role       spec.RouterRole `json:"role"`
	ASN        uint32          `json:"asn"`
	RouterID   netip.Addr      `json:"routerID"`
	Loopback   netip.Addr      `json:"loopback"`
	Interfaces []Interface     `json:"interfaces"`
}

// KubeNode is one Kubernetes node's plan.
type KubeNode struct {
	Name      string        `json:"name"`
	Role      spec.NodeRole `json:"role"`
	Router    string        `json:"router"`
	RouterASN uint32        `json:"routerASN"`
	ASN       uint32        `json:"asn"`
	RouterID  netip.Addr    `json:"routerID"`
	Address   netip.Addr    `json:"address"` // node-ip, a GUA from the control or worker /64
	// SpeakerAddress is the node's second address on its link: MetalLB's speaker
	// peers from it, so the router tells its session apart from Cilium's.
	SpeakerAddress  netip.Addr   `json:"speakerAddress"`
	SpeakerRouterID netip.Addr   `json:"speakerRouterID"`
	Link            netip.Prefix `json:"link"`    // the /126 shared with its router
	Gateway         netip.Addr   `json:"gateway"` // the router's side of the /127
	Iface           string       `json:"interface"`
	RouterIface     string       `json:"routerInterface"`
}

// Host is one external host's plan.
type Host struct {
	Name        string        `json:"name"`
	Role        spec.HostRole `json:"role"`
	Router      string        `json:"router"`
	Address     netip.Addr    `json:"address"`
	Subnet      netip.Prefix  `json:"subnet"`
	Gateway     netip.Addr    `json:"gateway"`
	Iface       string        `json:"interface"`
	RouterIface string        `json:"routerInterface"`
}

// Endpoint is one end of a link.
type Endpoint struct {
	Node  string `json:"node"`
	Iface string `json:"interface"`
}

// Link is one point-to-point data link.
type Link struct {
	Kind LinkKind `json:"kind"`
	A    Endpoint `json:"a"`
	B    Endpoint `json:"b"`
	MTU  int      `json:"mtu,omitempty"` // both ends; unset: spec.MaxLinkMTU
}

// Router returns the named router's plan.
func (p *Plan) Router(name string) *Router {
	for i := range p.Routers {
		if p.Routers[i].Name == name {
			return &p.Routers[i]
		}
	}
	return nil
}

// HostByRole returns the first host with that role.
func (p *Plan) HostByRole(role spec.HostRole) *Host {
	for i := range p.Hosts {
		if p.Hosts[i].Role == role {
			return &p.Hosts[i]
		}
	}
	return nil
}

// Server returns the control-plane node.
func (p *Plan) Server() *KubeNode {
	for i := range p.KubeNodes {
		if p.KubeNodes[i].Role == spec.RoleServer {
			return &p.KubeNodes[i]
		}
	}
	return nil
}

// ContainerName is the container name of a lab member, as containerlab names it
// (prefix "v6lab": v6lab-<lab>-<name>).
func (p *Plan) ContainerName(member string) string { return p.ContainerPfx + member }

// ManagementSubnet gives each lab its own ULA /64 inside fd36:6c61:6200::/48 ("6lab"),
// derived from the lab name (and, for the alternatives up picks when a running lab has
// the first one, an attempt number) so that two labs can run side by side. 16 bits of
// a hash: names do collide (lab944 and lab1280), which up detects.
func ManagementSubnet(lab string, attempt int) netip.Prefix {
	h := fnv.New32a()
	h.Write([]byte(lab))
	if attempt > 0 {
		fmt.Fprintf(h, "#%d", attempt)
	}
	v := h.Sum32()
	a := [16]byte{0xfd, 0x36, 0x6c, 0x61, 0x62, 0x00, byte(v >> 8), byte(v)}
	return netip.PrefixFrom(netip.AddrFrom16(a), 64)
}
