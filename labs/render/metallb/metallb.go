// Package metallb renders MetalLB's objects for the metallb announcer: an IPAddressPool
// per application (its ingress /64, reserved to its namespace), a BGPPeer per node
// (to its router, from the node's speaker address, with BFD when the spec enables it),
// a BGPAdvertisement of /128 VIPs, and the BFDProfile.
//
// The structs mirror MetalLB v0.15's CRDs (metallb.io/v1beta1, BGPPeer v1beta2).
package metallb

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/render/cilium"
	"v6lab.dev/v6lab/labs/spec"
)

// Namespace is where MetalLB and its objects live.
const Namespace = "metallb-system"

// IPAddressPool is metallb.io/v1beta1 IPAddressPool.
type IPAddressPool struct {
	cilium.TypeMeta `json:",inline"`
	Metadata        cilium.Meta       `json:"metadata"`
	Spec            IPAddressPoolSpec `json:"spec"`
}

// IPAddressPoolSpec is its spec.
type IPAddressPoolSpec struct {
	Addresses         []string           `json:"addresses"`
	AutoAssign        bool               `json:"autoAssign"`
	ServiceAllocation *ServiceAllocation `json:"serviceAllocation,omitempty"`
}

// ServiceAllocation restricts a pool to some namespaces.
type ServiceAllocation struct {
	Namespaces []string `json:"namespaces"`
}

// BGPPeer is metallb.io/v1beta2 BGPPeer.
type BGPPeer struct {
	cilium.TypeMeta `json:",inline"`
	Metadata        cilium.Meta `json:"metadata"`
	Spec            BGPPeerSpec `json:"spec"`
}

// BGPPeerSpec is its spec.
type BGPPeerSpec struct {
	MyASN         uint32                 `json:"myASN"`
	PeerASN       uint32                 `json:"peerASN"`
	PeerAddress   string                 `json:"peerAddress"`
	SourceAddress string                 `json:"sourceAddress"`
	RouterID      string                 `json:"routerID"`
	HoldTime      string                 `json:"holdTime"`
	KeepaliveTime string                 `json:"keepaliveTime"`
	ConnectTime   string                 `json:"connectTime"`
	NodeSelectors []metav1.LabelSelector `json:"nodeSelectors"`
	BFDProfile    string                 `json:"bfdProfile,omitempty"`
}

// BGPAdvertisement is metallb.io/v1beta1 BGPAdvertisement.
type BGPAdvertisement struct {
	cilium.TypeMeta `json:",inline"`
	Metadata        cilium.Meta          `json:"metadata"`
	Spec            BGPAdvertisementSpec `json:"spec"`
}

// BGPAdvertisementSpec is its spec.
type BGPAdvertisementSpec struct {
	IPAddressPools      []string `json:"ipAddressPools"`
	AggregationLengthV6 int      `json:"aggregationLengthV6"`
}

// L2Advertisement is metallb.io/v1beta1 L2Advertisement.
type L2Advertisement struct {
	cilium.TypeMeta `json:",inline"`
	Metadata        cilium.Meta         `json:"metadata"`
	Spec            L2AdvertisementSpec `json:"spec"`
}

// L2AdvertisementSpec is its spec: the pools it announces, on which interfaces.
type L2AdvertisementSpec struct {
	IPAddressPools []string `json:"ipAddressPools"`
	Interfaces     []string `json:"interfaces"`
}

// BFDProfile is metallb.io/v1beta1 BFDProfile.
type BFDProfile struct {
	cilium.TypeMeta `json:",inline"`
	Metadata        cilium.Meta    `json:"metadata"`
	Spec            BFDProfileSpec `json:"spec"`
}

// BFDProfileSpec is its spec.
type BFDProfileSpec struct {
	ReceiveInterval  int  `json:"receiveInterval"`
	TransmitInterval int  `json:"transmitInterval"`
	DetectMultiplier int  `json:"detectMultiplier"`
	EchoMode         bool `json:"echoMode"`
	PassiveMode      bool `json:"passiveMode"`
}

// BFDProfileName is the lab's BFD profile.
const BFDProfileName = "v6lab"

// Objects returns MetalLB's objects in apply order (nil unless MetalLB announces).
func Objects(p *plan.Plan) []any {
	s := p.Spec
	if !s.LoadBalancer.UsesMetalLB() {
		return nil
	}
	meta := func(name string) cilium.Meta { return cilium.Meta{Name: name, Namespace: Namespace} }
	var out []any
	if s.LoadBalancer.Announcer == spec.AnnouncerMetalLBL2 {
		pools := addressPools(p, meta)
		var names []string
		for _, a := range p.Apps {
			names = append(names, a.Name)
		}
		return append(pools, L2Advertisement{
			TypeMeta: cilium.TypeMeta{APIVersion: "metallb.io/v1beta1", Kind: "L2Advertisement"},
			Metadata: meta("v6lab"),
			// Only on the segment: the router links are point-to-point /126s.
			Spec: L2AdvertisementSpec{IPAddressPools: names, Interfaces: []string{plan.SegmentIface}},
		})
	}
	bfd := ""
	if s.BGP.BFD.Enabled {
		bfd = BFDProfileName
		out = append(out, BFDProfile{
			TypeMeta: cilium.TypeMeta{APIVersion: "metallb.io/v1beta1", Kind: "BFDProfile"},
			Metadata: meta(BFDProfileName),
			Spec: BFDProfileSpec{ReceiveInterval: s.BGP.BFD.ReceiveIntervalMs,
				TransmitInterval: s.BGP.BFD.TransmitIntervalMs, DetectMultiplier: s.BGP.BFD.DetectMultiplier},
		})
	}
	var pools []string
	for _, a := range p.Apps {
		pools = append(pools, a.Name)
	}
	out = append(out, addressPools(p, meta)...)
	for _, n := range p.KubeNodes {
		out = append(out, BGPPeer{
			TypeMeta: cilium.TypeMeta{APIVersion: "metallb.io/v1beta2", Kind: "BGPPeer"},
			Metadata: meta(fmt.Sprintf("%s-%s", n.Name, n.Router)),
			Spec: BGPPeerSpec{
				MyASN: n.ASN, PeerASN: n.RouterASN,
				PeerAddress: n.Gateway.String(), SourceAddress: n.SpeakerAddress.String(),
				// MetalLB's FRR mode runs one BGP instance per speaker and requires every
				// BGPPeer to carry the same router-id (its webhook rejects others); IPv6-only
				// nodes have no IPv4 address to derive one from, so the lab sets it: the
				// first node's speaker router-id, for all (the routers tell the speakers
				// apart by address, and none shares a router-id with them).
				RouterID:      p.KubeNodes[0].SpeakerRouterID.String(),
				HoldTime:      (time.Duration(s.BGP.HoldSeconds) * time.Second).String(),
				KeepaliveTime: (time.Duration(s.BGP.KeepaliveSeconds) * time.Second).String(),
				ConnectTime:   (cilium.ConnectRetrySeconds * time.Second).String(),
				NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{cilium.HostnameLabel: n.Name}}},
				BFDProfile:    bfd,
			},
		})
	}
	out = append(out, BGPAdvertisement{
		TypeMeta: cilium.TypeMeta{APIVersion: "metallb.io/v1beta1", Kind: "BGPAdvertisement"},
		Metadata: meta("v6lab"),
		Spec:     BGPAdvertisementSpec{IPAddressPools: pools, AggregationLengthV6: 128},
	})
	return out
}

// addressPools are one IPAddressPool per application, reserved to its namespace: its
// VIP range (plan.VIPRange: ::1-::ffff of its block, as Cilium's pools; never a
// prefix's first address, the Subnet-Router anycast address forwarding nodes claim).
func addressPools(p *plan.Plan, meta func(string) cilium.Meta) []any {
	var out []any
	for _, a := range p.Apps {
		first, last := p.VIPRange(a)
		out = append(out, IPAddressPool{
			TypeMeta: cilium.TypeMeta{APIVersion: "metallb.io/v1beta1", Kind: "IPAddressPool"},
			Metadata: meta(a.Name),
			Spec: IPAddressPoolSpec{Addresses: []string{first.String() + "-" + last.String()}, AutoAssign: true,
				ServiceAllocation: &ServiceAllocation{Namespaces: []string{a.Namespace}}},
		})
	}
	return out
}
