package plan

import (
	"fmt"
	"net/netip"
	"strings"

	"v6lab.dev/v6lab/labs/spec"
)

// New plans a defaulted, validated lab. Address problems (unparsable or IPv4 prefixes,
// a parent too small, overlaps, pinned pools that are not /64 or out of place) are
// returned together as a spec.ErrorList.
func New(l *spec.Lab) (*Plan, error) {
	var errs spec.ErrorList
	s := &l.Spec
	p := &Plan{
		Lab:          l.Metadata.Name,
		PodMaskSize:  s.Addressing.PodMaskSize,
		ClusterASN:   s.BGP.ClusterASN,
		Spec:         s,
		ContainerPfx: "v6lab-" + l.Metadata.Name + "-",
		Management: Management{
			Network:    "v6lab-" + l.Metadata.Name,
			IPv6Subnet: ManagementSubnet(l.Metadata.Name, 0),
		},
	}
	if m := s.Addressing.Management; m != "" {
		if pfx, ok := parseV6(&errs, "spec.addressing.management", m); ok {
			if pfx.Bits() != 64 || !ManagementBlock.Contains(pfx.Addr()) {
				errs.Add("spec.addressing.management", fmt.Sprintf("a /64 inside %s (or leave it out: it is derived from the lab name)", ManagementBlock),
					"management subnet %s is not a /64 of %s", pfx, ManagementBlock)
			} else {
				p.Management.IPv6Subnet = pfx
			}
		}
	}

	parent, ok := parseV6(&errs, "spec.addressing.parent", s.Addressing.Parent)
	if ok {
		if why := unusableParent(parent); why != "" {
			errs.Add("spec.addressing.parent", "use a global unicast block such as the documentation prefix "+spec.DefaultParent,
				"prefix %s %s", parent, why)
			ok = false
		}
	}
	if ok && parent.Bits() > MaxParentBits {
		errs.Add("spec.addressing.parent", fmt.Sprintf("use a /%d or shorter (the default is %s)", MaxParentBits, spec.DefaultParent),
			"prefix %s is too small: the plan needs sixteen /56 blocks", parent)
		ok = false
	}
	svc, svcOK := parseV6(&errs, "spec.addressing.serviceCIDR", s.Addressing.ServiceCIDR)
	if svcOK {
		if svc.Bits() < 108 {
			errs.Add("spec.addressing.serviceCIDR", "Kubernetes allows at most 20 host bits for an IPv6 service range: use /108 to /120, e.g. "+spec.DefaultServiceCIDR,
				"service range %s is too large", svc)
		}
		if svc.Bits() > 120 {
			errs.Add("spec.addressing.serviceCIDR", "use /108 to /120", "service range %s is too small", svc)
		}
		if !isULA(svc.Addr()) {
			errs.Add("spec.addressing.serviceCIDR", "ClusterIPs are never routed: use a ULA (fc00::/7) range such as "+spec.DefaultServiceCIDR,
				"service range %s is not a ULA", svc)
		}
		if ok && svc.Overlaps(parent) {
			errs.Add("spec.addressing.serviceCIDR", "keep the service range outside the parent block",
				"service range %s overlaps the parent %s", svc, parent)
		}
		p.ServiceCIDR = svc
		p.ClusterDNS = nthAddr(svc.Addr(), 10)
	}
	if m := s.Addressing.PodMaskSize; m < 65 || m > 80 {
		errs.Add("spec.addressing.podMaskSize", "each node gets a slice of each application's /64: use 65-80 (80 is the default); "+
			"Cilium's pool allocator, like Kubernetes', slices at most 16 bits below a pool's prefix",
			"mask size %d out of range", m)
	} else if need := len(s.Nodes); m-64 < 63 && uint64(1)<<(m-64) < uint64(need) {
		errs.Add("spec.addressing.podMaskSize", "use a longer mask so every node gets a slice",
			"a /64 holds only %d slices of /%d, fewer than the %d nodes", uint64(1)<<(m-64), m, need)
	}
	if !ok {
		return p, errs.Err()
	}
	p.Parent = parent
	nodes := subPrefix(parent, 56, blockNodes)
	p.Nodes = NodeBlock{Block: nodes, Control: subPrefix(nodes, 64, 0), Worker: subPrefix(nodes, 64, 1), Reserved: subPrefix(nodes, 64, 2)}
	p.Ingress = subPrefix(parent, 56, blockIngress)
	pods := subPrefix(parent, 56, blockPods)
	p.Pods = PodBlock{Block: pods, Default: subPrefix(pods, 64, 0)}
	p.Reserved = subPrefix(parent, 56, blockReserved)
	p.External = subPrefix(parent, 56, blockExternal)
	p.Infra = subPrefix(parent, 56, blockInfra)

	p.planApps(&errs)
	p.planUnderlay()
	p.planManagement()
	p.checkManagement(&errs)
	return p, errs.Err()
}

// planApps gives each application an ID (pinned ones first, then the lowest free IDs
// in list order) and its two /64s.
func (p *Plan) planApps(errs *spec.ErrorList) {
	apps := p.Spec.Applications
	used := map[int]bool{}
	for _, a := range apps {
		if a.ID > 0 {
			used[a.ID] = true
		}
	}
	next := 1
	usedPods := map[netip.Prefix]string{}
	usedIngress := map[netip.Prefix]string{}
	for i, a := range apps {
		path := spec.Index("spec.applications", i)
		id := a.ID
		if id == 0 {
			for used[next] {
				next++
			}
			id = next
			used[id] = true
		}
		if id > 255 {
			errs.Add(path, "a /56 holds 255 application /64s: remove applications or pin ids", "no free application id for %q", a.Name)
			continue
		}
		app := App{Name: a.Name, Namespace: a.Namespace, ID: id,
			PodPool: subPrefix(p.Pods.Block, 64, uint64(id)),
			Ingress: subPrefix(p.Ingress, 64, uint64(id))}
		if a.PodPool != "" {
			if pp, ok := pinned(errs, spec.Field(path, "podPool"), a.PodPool, p.Pods.Block, p.Pods.Default); ok {
				app.PodPool = pp
			}
		}
		if a.Ingress != "" {
			if ip, ok := pinned(errs, spec.Field(path, "ingress"), a.Ingress, p.Ingress, netip.Prefix{}); ok {
				app.Ingress = ip
			}
		}
		if prev, dup := usedPods[app.PodPool]; dup {
			errs.Add(spec.Field(path, "podPool"), "give each application its own pod /64 (pin id or podPool)",
				"pod pool %s overlaps application %s", app.PodPool, prev)
		}
		usedPods[app.PodPool] = a.Name
		if prev, dup := usedIngress[app.Ingress]; dup {
			errs.Add(spec.Field(path, "ingress"), "give each application its own ingress /64 (pin id or ingress)",
				"ingress %s overlaps application %s", app.Ingress, prev)
		}
		usedIngress[app.Ingress] = a.Name
		p.Apps = append(p.Apps, app)
	}
}

// pinned checks a user-pinned application /64.
func pinned(errs *spec.ErrorList, path, s string, block, reserved netip.Prefix) (netip.Prefix, bool) {
	pfx, ok := parseV6(errs, path, s)
	if !ok {
		return pfx, false
	}
	if pfx.Bits() != 64 {
		errs.Add(path, "each application gets exactly one /64 (RFC 7421, RFC 8504: SLAAC and hosts expect /64 subnets)",
			"%s is a /%d, not a /64", pfx, pfx.Bits())
		return pfx, false
	}
	if !block.Contains(pfx.Addr()) {
		errs.Add(path, fmt.Sprintf("pick a /64 inside %s", block), "%s lies outside its block %s", pfx, block)
		return pfx, false
	}
	if reserved.IsValid() && reserved.Overlaps(pfx) {
		errs.Add(path, "the first /64 of the pod block is the default pool", "%s overlaps the default pod pool", pfx)
		return pfx, false
	}
	return pfx, true
}

// planUnderlay numbers router interfaces, loopbacks, node links and host subnets.
// Interfaces are numbered eth1.. per router: fabric links first (in spec order), then
// node links, then host links.
func (p *Plan) planUnderlay() {
	s := p.Spec
	next := map[string]int{}
	iface := func(node string) string {
		next[node]++
		return fmt.Sprintf("eth%d", next[node])
	}
	idx := map[string]int{}
	for i, r := range s.Routers {
		idx[r.Name] = i
		p.Routers = append(p.Routers, Router{
			Name: r.Name, Role: r.Role, ASN: r.ASN,
			RouterID: routerID(1, i+1),
			Loopback: hostAddr(subPrefix(p.Infra, 64, 0), uint64(i+1)),
		})
	}
	for _, r := range s.Routers {
		for _, peer := range r.Links {
			a, b := iface(r.Name), iface(peer)
			p.Routers[idx[r.Name]].Interfaces = append(p.Routers[idx[r.Name]].Interfaces,
				Interface{Name: a, Kind: LinkFabric, Peer: peer, PeerIface: b})
			p.Routers[idx[peer]].Interfaces = append(p.Routers[idx[peer]].Interfaces,
				Interface{Name: b, Kind: LinkFabric, Peer: r.Name, PeerIface: a})
			p.Links = append(p.Links, Link{Kind: LinkFabric, A: Endpoint{r.Name, a}, B: Endpoint{peer, b}, MTU: p.linkMTU(0)})
		}
	}
	ordinal := map[spec.NodeRole]int{}
	for i, n := range s.Nodes {
		ordinal[n.Role]++
		pool := p.Nodes.Worker
		if n.Role == spec.RoleServer {
			pool = p.Nodes.Control
		}
		// A /126 per node link at pool::<n>0. ::<n>0 itself is the link's Subnet-Router
		// anycast address, which Linux claims on any forwarding interface (a node with
		// Cilium forwards): no host may use it. The router is ::<n>1, the node ::<n>2
		// (its node-ip, used by the Cilium BGP speaker) and ::<n>3 (the source of a
		// second speaker, MetalLB's, which the router must tell apart by address).
		link := netip.PrefixFrom(hostAddr(pool, uint64(0x10*ordinal[n.Role])), 126)
		gw := link.Addr().Next()
		addr := gw.Next()
		speaker := addr.Next()
		ri := idx[n.Router]
		rIf := iface(n.Router)
		p.Routers[ri].Interfaces = append(p.Routers[ri].Interfaces, Interface{
			Name: rIf, Kind: LinkNode, Peer: n.Name, PeerIface: "eth1",
			Address: netip.PrefixFrom(gw, 126), PeerAddr: addr})
		p.KubeNodes = append(p.KubeNodes, KubeNode{
			Name: n.Name, Role: n.Role, Router: n.Router, RouterASN: p.Routers[ri].ASN,
			ASN: s.BGP.ClusterASN, RouterID: routerID(2, i+1),
			Address: addr, SpeakerAddress: speaker, SpeakerRouterID: routerID(3, i+1), Link: link, Gateway: gw, Iface: "eth1", RouterIface: rIf})
		p.Links = append(p.Links, Link{Kind: LinkNode, A: Endpoint{n.Router, rIf}, B: Endpoint{n.Name, "eth1"}, MTU: p.linkMTU(0)})
	}
	for i, h := range s.Hosts {
		subnet := subPrefix(p.External, 64, uint64(i+1))
		ri := idx[h.Router]
		rIf := iface(h.Router)
		gw, addr := hostAddr(subnet, 1), hostAddr(subnet, 2)
		p.Routers[ri].Interfaces = append(p.Routers[ri].Interfaces, Interface{
			Name: rIf, Kind: LinkHost, Peer: h.Name, PeerIface: "eth1",
			Address: netip.PrefixFrom(gw, 64), PeerAddr: addr})
		p.Hosts = append(p.Hosts, Host{Name: h.Name, Role: h.Role, Router: h.Router,
			Address: addr, Subnet: subnet, Gateway: gw, Iface: "eth1", RouterIface: rIf})
		p.Links = append(p.Links, Link{Kind: LinkHost, A: Endpoint{h.Router, rIf}, B: Endpoint{h.Name, "eth1"}, MTU: p.linkMTU(h.MTU)})
	}
	if s.LoadBalancer.Announcer == spec.AnnouncerMetalLBL2 {
		p.planSegment(idx[s.LoadBalancer.SegmentRouter], iface)
	}
}

// planSegment lays out the layer 2 segment: the node pool's fourth /64, the router at
// ::1, node n (in spec order) at ::1n (::11, ::12, ...), and the switch's ports eth1
// (the router's) onwards. VIPs take each application's /112 above them (VIPBlock).
func (p *Plan) planSegment(ri int, iface func(string) string) {
	r := &p.Routers[ri]
	subnet := subPrefix(p.Nodes.Block, 64, 3)
	seg := &Segment{Switch: spec.SegmentMember, Subnet: subnet, Router: r.Name,
		RouterIface: iface(r.Name), RouterAddr: hostAddr(subnet, 1), SwitchIface: iface(spec.SegmentMember)}
	r.Interfaces = append(r.Interfaces, Interface{Name: seg.RouterIface, Kind: LinkSegment, Peer: seg.Switch,
		PeerIface: seg.SwitchIface, Address: netip.PrefixFrom(seg.RouterAddr, 64)})
	p.Links = append(p.Links, Link{Kind: LinkSegment, A: Endpoint{r.Name, seg.RouterIface}, B: Endpoint{seg.Switch, seg.SwitchIface}, MTU: p.linkMTU(0)})
	for i, n := range p.KubeNodes {
		port := SegmentPort{Node: n.Name, Iface: SegmentIface, Address: hostAddr(subnet, uint64(0x11+i)), SwitchIface: iface(seg.Switch)}
		seg.Ports = append(seg.Ports, port)
		p.Links = append(p.Links, Link{Kind: LinkSegment, A: Endpoint{seg.Switch, port.SwitchIface}, B: Endpoint{n.Name, port.Iface}, MTU: p.linkMTU(0)})
	}
	p.Segment = seg
}

// linkMTU is a link's MTU: its own (a host's mtu), else the lab's linkMTU; zero where
// that is containerlab's default (spec.MaxLinkMTU), which the topology leaves out.
func (p *Plan) linkMTU(own int) int {
	m := own
	if m == 0 {
		m = p.Spec.LinkMTU
	}
	if m == spec.MaxLinkMTU {
		return 0
	}
	return m
}

// planManagement gives every member a fixed management address: routers from ::10,
// nodes from ::100, hosts from ::200 (::1 is the engine's gateway).
func (p *Plan) planManagement() {
	p.Management.Addresses = map[string]netip.Addr{}
	for i, r := range p.Routers {
		p.Management.Addresses[r.Name] = hostAddr(p.Management.IPv6Subnet, uint64(0x10+i))
	}
	for i, n := range p.KubeNodes {
		p.Management.Addresses[n.Name] = hostAddr(p.Management.IPv6Subnet, uint64(0x100+i))
	}
	for i, h := range p.Hosts {
		p.Management.Addresses[h.Name] = hostAddr(p.Management.IPv6Subnet, uint64(0x200+i))
	}
	if p.Segment != nil {
		p.Management.Addresses[p.Segment.Switch] = hostAddr(p.Management.IPv6Subnet, 0x300)
	}
}

// checkManagement reports members that would share a management address (the spec's
// list bounds keep the ranges apart; this says so if they ever do not).
func (p *Plan) checkManagement(errs *spec.ErrorList) {
	owner := map[netip.Addr]string{}
	for name, a := range p.Management.Addresses {
		if prev, dup := owner[a]; dup {
			errs.Add("spec", "fewer routers, nodes or hosts", "members %s and %s would share the management address %s", min(prev, name), max(prev, name), a)
		}
		owner[a] = name
	}
}

func parseV6(errs *spec.ErrorList, path, s string) (netip.Prefix, bool) {
	pfx, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		errs.Add(path, "an IPv6 prefix such as 2001:db8::/48", "not a prefix: %q", s)
		return pfx, false
	}
	if pfx.Addr().Is4() || pfx.Addr().Is4In6() {
		errs.Add(path, "the lab is IPv6-only: data-plane fields take IPv6 prefixes only", "IPv4 prefix %s in a data-plane field", pfx)
		return pfx, false
	}
	if pfx.Masked() != pfx {
		errs.Add(path, fmt.Sprintf("write the prefix with its host bits zero: %s", pfx.Masked()), "prefix %s has host bits set", pfx)
		return pfx, false
	}
	return pfx, true
}

// ManagementBlock holds every lab's management /64 (ULA "6lab").
var ManagementBlock = netip.MustParsePrefix("fd36:6c61:6200::/48")

// unusableParent says why a prefix cannot be the lab's parent block ("" when it can).
func unusableParent(p netip.Prefix) string {
	a := p.Addr()
	switch {
	case p.Bits() == 0 || a.IsUnspecified():
		return "is the unspecified address or the whole address space"
	case a.IsMulticast() || p.Overlaps(netip.MustParsePrefix("ff00::/8")):
		return "is multicast"
	case a.IsLinkLocalUnicast() || p.Overlaps(netip.MustParsePrefix("fe80::/10")):
		return "is link-local"
	case a.IsLoopback():
		return "is the loopback address"
	case p.Overlaps(ManagementBlock):
		return fmt.Sprintf("overlaps the management range %s", ManagementBlock)
	}
	return ""
}

func isULA(a netip.Addr) bool { return a.Is6() && a.As16()[0]&0xfe == 0xfc }

// nthAddr is the address n after a.
func nthAddr(a netip.Addr, n int) netip.Addr {
	for range n {
		a = a.Next()
	}
	return a
}
