// Package spec holds the public, versioned lab specification (v6lab.dev/v1alpha1):
// its types, strict decoding, defaults and validation. Validation never stops at the
// first problem: every error carries the field path it belongs to and a hint.
package spec

// APIVersion and Kind identify a lab document.
const (
	APIVersion = "v6lab.dev/v1alpha1"
	KindLab    = "Lab"
)

// Lab is one lab document.
type Lab struct {
	APIVersion string   `yaml:"apiVersion" json:"apiVersion"`
	Kind       string   `yaml:"kind" json:"kind"`
	Metadata   Metadata `yaml:"metadata" json:"metadata"`
	Spec       LabSpec  `yaml:"spec" json:"spec"`
}

// Metadata names the lab. The name prefixes every container, network and directory.
type Metadata struct {
	Name string `yaml:"name" json:"name"`
}

// LabSpec is everything a lab is made of.
type LabSpec struct {
	Addressing   Addressing    `yaml:"addressing" json:"addressing"`
	Routers      []Router      `yaml:"routers" json:"routers"`
	Nodes        []Node        `yaml:"nodes" json:"nodes"`
	Hosts        []Host        `yaml:"hosts" json:"hosts"`
	Applications []Application `yaml:"applications" json:"applications"`
	Datapath     Datapath      `yaml:"datapath" json:"datapath"`
	LoadBalancer LoadBalancer  `yaml:"loadBalancer" json:"loadBalancer"`
	BGP          BGP           `yaml:"bgp" json:"bgp"`
	Versions     Versions      `yaml:"versions" json:"versions"`
	Upgrade      Upgrade       `yaml:"upgrade" json:"upgrade"`
	// LinkMTU is the MTU of every lab link (both ends) whose host does not set its own,
	// MinMTU to MaxLinkMTU; default MaxLinkMTU (containerlab's veth default). Native XDP
	// (loadBalancer.acceleration) needs veth links of at most 3506 bytes here.
	LinkMTU int `yaml:"linkMTU,omitempty" json:"linkMTU,omitempty"`
}

// Upgrade bounds what an in-place Cilium upgrade may do to the lab's running traffic
// (the upgrade-disruption check; TCP connections must always survive).
type Upgrade struct {
	// MaxUDPOutageMs is the longest a 10 ms UDP stream (client -> VIP, pod -> world)
	// may go unanswered while the agents restart. Default DefaultMaxUDPOutageMs.
	MaxUDPOutageMs int `yaml:"maxUDPOutageMs,omitempty" json:"maxUDPOutageMs,omitempty"`
}

// Addressing is the input of the address planner.
type Addressing struct {
	// Parent is the lab's IPv6 block; every data-plane address is carved from it.
	// Default 2001:db8::/48. It must be /52 or shorter (sixteen /56 blocks).
	Parent string `yaml:"parent,omitempty" json:"parent,omitempty"`
	// ServiceCIDR is the ClusterIP range (ULA, never routed). Default fd00:6:96::/112.
	ServiceCIDR string `yaml:"serviceCIDR,omitempty" json:"serviceCIDR,omitempty"`
	// PodMaskSize is the size of the slice of each pod pool that a node gets
	// (multi-pool IPAM maskSize), 65-80. Default 80.
	PodMaskSize int `yaml:"podMaskSize,omitempty" json:"podMaskSize,omitempty"`
	// Management is the management network's /64 (ULA, inside fd36:6c61:6200::/48).
	// Default: derived from the lab name; `up` records another one here when a running
	// lab already has the derived one.
	Management string `yaml:"management,omitempty" json:"management,omitempty"`
}

// RouterRole is a router's place in the underlay.
type RouterRole string

const (
	RoleSpine RouterRole = "spine"
	RoleLeaf  RouterRole = "leaf"
	RoleEdge  RouterRole = "edge"
)

// Router is one FRR router of the underlay.
type Router struct {
	Name string     `yaml:"name" json:"name"`
	Role RouterRole `yaml:"role" json:"role"`
	ASN  uint32     `yaml:"asn" json:"asn"`
	// Links names the routers this one has a fabric link to (BGP unnumbered).
	// A link is declared on one side only.
	Links []string `yaml:"links,omitempty" json:"links,omitempty"`
}

// NodeRole is a Kubernetes node's role, as k3s names them.
type NodeRole string

const (
	RoleServer NodeRole = "server"
	RoleAgent  NodeRole = "agent"
)

// Node is one Kubernetes node, attached to one router.
type Node struct {
	Name   string   `yaml:"name" json:"name"`
	Role   NodeRole `yaml:"role" json:"role"`
	Router string   `yaml:"router" json:"router"`
}

// HostRole is an external host's job in the lab.
type HostRole string

const (
	// RoleClient reaches the VIPs from outside the cluster.
	RoleClient HostRole = "client"
	// RoleWorld is the "internet" host pods egress to; it lives inside the lab.
	RoleWorld HostRole = "world"
)

// Host is an external (non-Kubernetes) host attached to one router.
type Host struct {
	Name   string   `yaml:"name" json:"name"`
	Role   HostRole `yaml:"role" json:"role"`
	Router string   `yaml:"router" json:"router"`
	// MTU of the host's link to its router (both ends), from MinMTU to the lab's
	// linkMTU; unset, linkMTU like every other link. An edge smaller than the fabric is
	// how a tunnel lab leaves room for the encapsulation of what its hosts send.
	MTU int `yaml:"mtu,omitempty" json:"mtu,omitempty"`
}

// MinMTU is IPv6's minimum link MTU (RFC 8200); MaxLinkMTU is the largest lab link
// MTU and the default (containerlab's veth default).
const (
	MinMTU     = 1280
	MaxLinkMTU = 9500
)

// Application gets its own pod /64 and ingress /64.
type Application struct {
	Name      string `yaml:"name" json:"name"`
	Namespace string `yaml:"namespace,omitempty" json:"namespace,omitempty"`
	// ID pins the application's /64 index (1-255) in the pod and ingress blocks.
	// Unpinned applications take the lowest free IDs in list order, so appending an
	// application never moves an existing one.
	ID int `yaml:"id,omitempty" json:"id,omitempty"`
	// PodPool and Ingress pin the application's /64s explicitly (optional). Each must
	// be a /64 (RFC 7421, RFC 8504) inside the planned pod or ingress block.
	PodPool string `yaml:"podPool,omitempty" json:"podPool,omitempty"`
	Ingress string `yaml:"ingress,omitempty" json:"ingress,omitempty"`
}

// Datapath is Cilium's routing mode.
type Datapath string

const (
	DatapathNative Datapath = "native"
	DatapathTunnel Datapath = "tunnel"
)

// Announcer is what announces LoadBalancer VIPs to the routers.
type Announcer string

const (
	AnnouncerCiliumBGP Announcer = "cilium-bgp"
	AnnouncerMetalLB   Announcer = "metallb"
	// AnnouncerMetalLBL2 is MetalLB's layer 2 mode: the nodes share a segment with a
	// router, and the speaker MetalLB elects for a VIP answers the router's Neighbor
	// Solicitations for it (NDP). The VIPs come from the segment's /64.
	AnnouncerMetalLBL2 Announcer = "metallb-l2"
)

// UsesMetalLB says whether MetalLB announces the VIPs (in either mode).
func (lb LoadBalancer) UsesMetalLB() bool {
	return lb.Announcer == AnnouncerMetalLB || lb.Announcer == AnnouncerMetalLBL2
}

// LBMode is Cilium's load-balancing mode for remote backends.
type LBMode string

const (
	LBModeDSR  LBMode = "dsr"
	LBModeSNAT LBMode = "snat"
)

// LoadBalancer says who announces VIPs and how Cilium balances.
type LoadBalancer struct {
	Announcer Announcer `yaml:"announcer,omitempty" json:"announcer,omitempty"`
	// Mode defaults to dsr in native routing and snat in tunnel mode.
	Mode LBMode `yaml:"mode,omitempty" json:"mode,omitempty"`
	// Algorithm is maglev (default) or random.
	Algorithm string `yaml:"algorithm,omitempty" json:"algorithm,omitempty"`
	// Acceleration is Cilium's XDP load balancing on the nodes' data link
	// (loadBalancer.acceleration): disabled (default), native (the driver's XDP hook;
	// the agent refuses to start where the driver has none) or best-effort (native
	// where the driver has it). Which mode ran is read from each node's link.
	Acceleration Acceleration `yaml:"acceleration,omitempty" json:"acceleration,omitempty"`
	// SegmentRouter is the router on the nodes' shared layer 2 segment (announcer
	// metallb-l2 only; default: the client's router). The segment is a lab member of
	// its own, a bridge inside a container's network namespace.
	SegmentRouter string `yaml:"segmentRouter,omitempty" json:"segmentRouter,omitempty"`
}

// Acceleration is the XDP mode of Cilium's load balancer.
type Acceleration string

const (
	AccelerationDisabled   Acceleration = "disabled"
	AccelerationNative     Acceleration = "native"
	AccelerationBestEffort Acceleration = "best-effort"
)

// Asked says whether the spec asks Cilium for XDP (unset is disabled).
func (a Acceleration) Asked() bool {
	return a != "" && a != AccelerationDisabled
}

// BGP holds the session parameters every speaker of the lab uses.
type BGP struct {
	// ClusterASN is the ASN of every Kubernetes node's speaker. Default 64512.
	ClusterASN       uint32 `yaml:"clusterASN,omitempty" json:"clusterASN,omitempty"`
	KeepaliveSeconds int    `yaml:"keepaliveSeconds,omitempty" json:"keepaliveSeconds,omitempty"`
	HoldSeconds      int    `yaml:"holdSeconds,omitempty" json:"holdSeconds,omitempty"`
	BFD              BFD    `yaml:"bfd" json:"bfd"`
}

// BFD turns on BFD between routers and node speakers.
type BFD struct {
	Enabled            bool `yaml:"enabled" json:"enabled"`
	ReceiveIntervalMs  int  `yaml:"receiveIntervalMs,omitempty" json:"receiveIntervalMs,omitempty"`
	TransmitIntervalMs int  `yaml:"transmitIntervalMs,omitempty" json:"transmitIntervalMs,omitempty"`
	DetectMultiplier   int  `yaml:"detectMultiplier,omitempty" json:"detectMultiplier,omitempty"`
}

// Distribution is how Kubernetes runs in the nodes.
type Distribution string

const (
	// DistK3s runs the public k3s image (needs a registry).
	DistK3s Distribution = "k3s"
	// DistUpstream runs a node image v6lab builds offline from k8s.io/kubernetes.
	DistUpstream Distribution = "upstream"
)

// Versions pins what the lab runs.
type Versions struct {
	Cilium     string     `yaml:"cilium,omitempty" json:"cilium,omitempty"`
	Kubernetes Kubernetes `yaml:"kubernetes" json:"kubernetes"`
	MetalLB    string     `yaml:"metallb,omitempty" json:"metallb,omitempty"`
}

// Kubernetes is the node distribution and its version.
type Kubernetes struct {
	Distribution Distribution `yaml:"distribution,omitempty" json:"distribution,omitempty"`
	Version      string       `yaml:"version,omitempty" json:"version,omitempty"`
}
