package cilium

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/spec"
)

// Typed structs of the Cilium CRDs v6lab renders. They mirror the CRD schemas of Cilium
// 1.18-1.20 (pkg/k8s/apis/cilium.io/client/crds); importing Cilium's own API package
// would pull most of Cilium into v6lab's module graph for a handful of fields.

// Meta is the object metadata v6lab sets.
type Meta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// TypeMeta is apiVersion + kind.
type TypeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// PoolFamily is one address family of a pod pool.
type PoolFamily struct {
	CIDRs    []string `json:"cidrs"`
	MaskSize int      `json:"maskSize"`
}

// PodIPPool is a CiliumPodIPPool (cilium.io/v2alpha1).
type PodIPPool struct {
	TypeMeta `json:",inline"`
	Metadata Meta          `json:"metadata"`
	Spec     PodIPPoolSpec `json:"spec"`
}

// PodIPPoolSpec is its spec.
type PodIPPoolSpec struct {
	IPv6 *PoolFamily `json:"ipv6,omitempty"`
}

// LBIPPool is a CiliumLoadBalancerIPPool (cilium.io/v2).
type LBIPPool struct {
	TypeMeta `json:",inline"`
	Metadata Meta         `json:"metadata"`
	Spec     LBIPPoolSpec `json:"spec"`
}

// LBIPPoolSpec is its spec.
type LBIPPoolSpec struct {
	// AllowFirstLastIPs "No" keeps the first address (the prefix's Subnet-Router
	// anycast address, which clients refuse as a destination) out of the VIPs.
	AllowFirstLastIPs string                `json:"allowFirstLastIPs"`
	Blocks            []CIDRBlock           `json:"blocks"`
	ServiceSelector   *metav1.LabelSelector `json:"serviceSelector,omitempty"`
}

// CIDRBlock is one block of an LB pool: a CIDR, or a range from start to stop.
type CIDRBlock struct {
	CIDR  string `json:"cidr,omitempty"`
	Start string `json:"start,omitempty"`
	Stop  string `json:"stop,omitempty"`
}

// BGPClusterConfig is a CiliumBGPClusterConfig (cilium.io/v2).
type BGPClusterConfig struct {
	TypeMeta `json:",inline"`
	Metadata Meta                 `json:"metadata"`
	Spec     BGPClusterConfigSpec `json:"spec"`
}

// BGPClusterConfigSpec is its spec.
type BGPClusterConfigSpec struct {
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
	BGPInstances []BGPInstance         `json:"bgpInstances"`
}

// BGPInstance is one BGP instance of the cluster config.
type BGPInstance struct {
	Name     string    `json:"name"`
	LocalASN uint32    `json:"localASN"`
	Peers    []BGPPeer `json:"peers"`
}

// BGPPeer is one peer of an instance.
type BGPPeer struct {
	Name          string  `json:"name"`
	PeerASN       uint32  `json:"peerASN"`
	PeerAddress   string  `json:"peerAddress"`
	PeerConfigRef NameRef `json:"peerConfigRef"`
}

// NameRef references an object by name.
type NameRef struct {
	Name string `json:"name"`
}

// BGPPeerConfig is a CiliumBGPPeerConfig (cilium.io/v2).
type BGPPeerConfig struct {
	TypeMeta `json:",inline"`
	Metadata Meta              `json:"metadata"`
	Spec     BGPPeerConfigSpec `json:"spec"`
}

// BGPPeerConfigSpec is its spec.
type BGPPeerConfigSpec struct {
	Timers          BGPTimers          `json:"timers"`
	GracefulRestart BGPGracefulRestart `json:"gracefulRestart"`
	Families        []BGPFamily        `json:"families"`
}

// BGPTimers are the session timers.
type BGPTimers struct {
	ConnectRetryTimeSeconds int `json:"connectRetryTimeSeconds"`
	HoldTimeSeconds         int `json:"holdTimeSeconds"`
	KeepAliveTimeSeconds    int `json:"keepAliveTimeSeconds"`
}

// BGPGracefulRestart is off in the lab: failover must be measured, not hidden.
type BGPGracefulRestart struct {
	Enabled bool `json:"enabled"`
}

// BGPFamily selects the advertisements of one AFI/SAFI.
type BGPFamily struct {
	AFI            string                `json:"afi"`
	SAFI           string                `json:"safi"`
	Advertisements *metav1.LabelSelector `json:"advertisements"`
}

// BGPAdvertisement is a CiliumBGPAdvertisement (cilium.io/v2).
type BGPAdvertisement struct {
	TypeMeta `json:",inline"`
	Metadata Meta                 `json:"metadata"`
	Spec     BGPAdvertisementSpec `json:"spec"`
}

// BGPAdvertisementSpec is its spec.
type BGPAdvertisementSpec struct {
	Advertisements []Advertisement `json:"advertisements"`
}

// Advertisement is one kind of route to announce.
type Advertisement struct {
	AdvertisementType string                `json:"advertisementType"`
	Selector          *metav1.LabelSelector `json:"selector,omitempty"`
	Service           *ServiceAdvert        `json:"service,omitempty"`
}

// ServiceAdvert picks which service addresses to announce.
type ServiceAdvert struct {
	Addresses []string `json:"addresses"`
}

// BGPNodeConfigOverride is a CiliumBGPNodeConfigOverride (cilium.io/v2): it sets the
// router-id explicitly, since an IPv6-only node has no IPv4 address to derive it from.
type BGPNodeConfigOverride struct {
	TypeMeta `json:",inline"`
	Metadata Meta                      `json:"metadata"`
	Spec     BGPNodeConfigOverrideSpec `json:"spec"`
}

// BGPNodeConfigOverrideSpec is its spec.
type BGPNodeConfigOverrideSpec struct {
	BGPInstances []BGPInstanceOverride `json:"bgpInstances"`
}

// BGPInstanceOverride overrides one instance on one node.
type BGPInstanceOverride struct {
	Name     string `json:"name"`
	RouterID string `json:"routerID"`
}

const (
	// InstanceName is the single BGP instance of every node.
	InstanceName = "v6lab"
	// PeerConfigName is the shared peer config.
	PeerConfigName = "v6lab-router"
	// AdvertiseLabel marks the advertisements the peer config selects.
	AdvertiseLabel = "v6lab.dev/advertise"
	// PoolAnnotation selects a namespace's pod pool (multi-pool IPAM).
	PoolAnnotation = "ipam.cilium.io/ip-pool"
	// HostnameLabel selects one node.
	HostnameLabel = "kubernetes.io/hostname"
	// ConnectRetrySeconds is how long a node's BGP speaker (Cilium's, MetalLB's) waits
	// between attempts to open a lost session: GoBGP's and FRR's default is 120 s, and
	// MetalLB's FRR does not listen (the router cannot reopen it), so a session a
	// failover fault shut would stay down two minutes after the fault is undone.
	ConnectRetrySeconds = 5
)

// everything selects every object: Cilium treats an empty selector as "none", so its
// documentation selects all with a NotIn on a value nothing carries.
func everything() *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: "v6lab.dev/never", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"never"}}}}
}

// Objects returns every Cilium object of the lab, in apply order.
func Objects(p *plan.Plan) []any {
	s := p.Spec
	var out []any
	for _, a := range p.Apps {
		out = append(out, PodIPPool{
			TypeMeta: TypeMeta{"cilium.io/v2alpha1", "CiliumPodIPPool"},
			Metadata: Meta{Name: a.Name, Labels: map[string]string{"v6lab.dev/application": a.Name}},
			Spec:     PodIPPoolSpec{IPv6: &PoolFamily{CIDRs: []string{a.PodPool.String()}, MaskSize: p.PodMaskSize}},
		})
	}
	if s.LoadBalancer.Announcer == spec.AnnouncerCiliumBGP {
		for _, a := range p.Apps {
			first, last := p.VIPRange(a)
			out = append(out, LBIPPool{
				TypeMeta: TypeMeta{"cilium.io/v2", "CiliumLoadBalancerIPPool"},
				Metadata: Meta{Name: a.Name, Labels: map[string]string{"v6lab.dev/application": a.Name}},
				Spec: LBIPPoolSpec{
					AllowFirstLastIPs: "No",
					// VIPs from ::1: Cilium hands out the prefix's first address
					// (::, the Subnet-Router anycast address) otherwise, and clients
					// refuse to connect to it.
					Blocks: []CIDRBlock{{Start: first.String(), Stop: last.String()}},
					ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{
						"io.kubernetes.service.namespace": a.Namespace}},
				},
			})
		}
	}
	out = append(out, BGPPeerConfig{
		TypeMeta: TypeMeta{"cilium.io/v2", "CiliumBGPPeerConfig"},
		Metadata: Meta{Name: PeerConfigName},
		Spec: BGPPeerConfigSpec{
			Timers: BGPTimers{ConnectRetryTimeSeconds: ConnectRetrySeconds, HoldTimeSeconds: s.BGP.HoldSeconds,
				KeepAliveTimeSeconds: s.BGP.KeepaliveSeconds},
			Families: []BGPFamily{{AFI: "ipv6", SAFI: "unicast", Advertisements: &metav1.LabelSelector{
				MatchLabels: map[string]string{AdvertiseLabel: "bgp"}}}},
		},
	})
	var adverts []Advertisement
	if s.Datapath == spec.DatapathNative {
		adverts = append(adverts, Advertisement{AdvertisementType: "CiliumPodIPPool", Selector: everything()})
	}
	if s.LoadBalancer.Announcer == spec.AnnouncerCiliumBGP {
		adverts = append(adverts, Advertisement{AdvertisementType: "Service", Selector: everything(),
			Service: &ServiceAdvert{Addresses: []string{"LoadBalancerIP"}}})
	}
	if len(adverts) > 0 {
		out = append(out, BGPAdvertisement{
			TypeMeta: TypeMeta{"cilium.io/v2", "CiliumBGPAdvertisement"},
			Metadata: Meta{Name: "v6lab", Labels: map[string]string{AdvertiseLabel: "bgp"}},
			Spec:     BGPAdvertisementSpec{Advertisements: adverts},
		})
	}
	for _, n := range p.KubeNodes {
		out = append(out, BGPClusterConfig{
			TypeMeta: TypeMeta{"cilium.io/v2", "CiliumBGPClusterConfig"},
			Metadata: Meta{Name: "v6lab-" + n.Name},
			Spec: BGPClusterConfigSpec{
				NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{HostnameLabel: n.Name}},
				BGPInstances: []BGPInstance{{Name: InstanceName, LocalASN: n.ASN, Peers: []BGPPeer{{
					Name: n.Router, PeerASN: n.RouterASN, PeerAddress: n.Gateway.String(),
					PeerConfigRef: NameRef{PeerConfigName}}}}},
			},
		}, BGPNodeConfigOverride{
			TypeMeta: TypeMeta{"cilium.io/v2", "CiliumBGPNodeConfigOverride"},
			Metadata: Meta{Name: n.Name},
			Spec: BGPNodeConfigOverrideSpec{BGPInstances: []BGPInstanceOverride{{
				Name: InstanceName, RouterID: n.RouterID.String()}}},
		})
	}
	return out
}
