package spec

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	dnsLabel     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	semver       = regexp.MustCompile(`^v?(\d+)\.(\d+)\.(\d+)$`)
	k3sVersion   = regexp.MustCompile(`^v\d+\.\d+\.\d+\+k3s\d+$`)
	upstreamVers = regexp.MustCompile(`^v\d+\.\d+\.\d+$`)
)

// SupportedCiliumMinors are the Cilium minor versions whose Helm values and CRD
// versions v6lab renders.
var SupportedCiliumMinors = []string{"1.18", "1.19", "1.20"}

// Bounds on the spec's lists: one host runs the whole lab (3-4 Kubernetes nodes fit a
// 2-core machine), and the management plan numbers members inside fixed ranges.
const (
	MaxRouters      = 64
	MaxNodes        = 64
	MaxHosts        = 16
	MaxApplications = 255
	MaxLinks        = 64 // per router
)

// SegmentMember is the name of the lab member that is the metallb-l2 announcer's
// layer 2 segment (a switch): no router, node or host may take it.
const SegmentMember = "segment"

// MaxNameLen keeps container names (v6lab-<lab>-<node>) and host paths short.
const MaxNameLen = 24

// Validate checks a defaulted lab for problems that need no address arithmetic
// (the planner checks the rest). It returns every problem found.
func Validate(l *Lab) ErrorList {
	var errs ErrorList
	if l.APIVersion != APIVersion {
		errs.Add("apiVersion", "use apiVersion: "+APIVersion, "unsupported apiVersion %q", l.APIVersion)
	}
	if l.Kind != KindLab {
		errs.Add("kind", "use kind: Lab", "unsupported kind %q", l.Kind)
	}
	checkName(&errs, "metadata.name", l.Metadata.Name)
	s := &l.Spec
	// Bounds first: a lab on one host has a handful of members, and every list below is
	// walked with per-item work. (The management plan numbers at most MaxRouters
	// routers, MaxNodes nodes and MaxHosts hosts without two sharing an address.)
	tooLong := false
	for _, b := range []struct {
		path   string
		n, max int
	}{{"spec.routers", len(s.Routers), MaxRouters}, {"spec.nodes", len(s.Nodes), MaxNodes},
		{"spec.hosts", len(s.Hosts), MaxHosts}, {"spec.applications", len(s.Applications), MaxApplications}} {
		if b.n > b.max {
			errs.Add(b.path, fmt.Sprintf("at most %d: one host runs the whole lab", b.max), "%d entries", b.n)
			tooLong = true
		}
	}
	if tooLong {
		return errs
	}
	routerHint := known(routerNames(s)) // built once: every "unknown router" names them

	// Every router, node and host becomes a container: names share one namespace.
	names := map[string]string{}
	claim := func(path, name string) {
		if name == "" {
			return
		}
		if prev, ok := names[name]; ok {
			errs.Add(path, "every router, node and host needs its own name",
				"name %q is already used at %s", name, prev)
			return
		}
		names[name] = path
	}

	routers := map[string]int{}
	asns := map[uint32]string{}
	if len(s.Routers) == 0 {
		errs.Add("spec.routers", "add at least one FRR router (see topologies/default.yaml)", "no routers")
	}
	for i, r := range s.Routers {
		p := Index("spec.routers", i)
		checkName(&errs, Field(p, "name"), r.Name)
		claim(Field(p, "name"), r.Name)
		routers[r.Name] = i
		switch r.Role {
		case RoleSpine, RoleLeaf, RoleEdge:
		default:
			errs.Add(Field(p, "role"), "one of: spine, leaf, edge", "unknown router role %q", r.Role)
		}
		checkASN(&errs, Field(p, "asn"), r.ASN)
		if prev, ok := asns[r.ASN]; ok && r.ASN != 0 {
			errs.Add(Field(p, "asn"), "each router needs its own ASN (eBGP fabric); it must also differ from spec.bgp.clusterASN",
				"ASN %d is already used by %s", r.ASN, prev)
		}
		asns[r.ASN] = p
	}
	if prev, ok := asns[s.BGP.ClusterASN]; ok {
		errs.Add("spec.bgp.clusterASN", "the nodes' ASN must differ from every router's ASN",
			"ASN %d is also used by %s", s.BGP.ClusterASN, prev)
	}
	checkASN(&errs, "spec.bgp.clusterASN", s.BGP.ClusterASN)

	seenLinks := map[[2]string]string{}
	for i, r := range s.Routers {
		if len(r.Links) > MaxLinks {
			errs.Add(Field(Index("spec.routers", i), "links"), fmt.Sprintf("at most %d links per router", MaxLinks), "%d links", len(r.Links))
			continue
		}
		for j, peer := range r.Links {
			p := Index(Field(Index("spec.routers", i), "links"), j)
			if _, ok := routers[peer]; !ok {
				errs.Add(p, "name a router of spec.routers"+routerHint, "unknown router %q", peer)
				continue
			}
			if peer == r.Name {
				errs.Add(p, "a router cannot link to itself", "link to itself")
				continue
			}
			key := [2]string{min(r.Name, peer), max(r.Name, peer)}
			if prev, ok := seenLinks[key]; ok {
				errs.Add(p, "declare each fabric link on one side only", "link %s–%s is already declared at %s", r.Name, peer, prev)
				continue
			}
			seenLinks[key] = p
		}
	}

	// One fabric: every router linked to the others (a lone router needs no link). A
	// node or host behind a router outside it could never reach the rest.
	cut := map[string]bool{}
	if len(s.Routers) > 1 {
		joined := reachable(s)
		for i, r := range s.Routers {
			if !joined[r.Name] {
				cut[r.Name] = true
				hint := "link it to a router of the fabric (spec.routers[].links)"
				detail := "router %q is not connected to the fabric of %s"
				if linked := len(r.Links) > 0; !linked {
					detail = "router %q has no links, so it is not connected to the fabric of %s"
				}
				errs.Add(Field(Index("spec.routers", i), "links"), hint, detail, r.Name, s.Routers[0].Name)
			}
		}
	}

	servers := 0
	for i, n := range s.Nodes {
		p := Index("spec.nodes", i)
		checkName(&errs, Field(p, "name"), n.Name)
		claim(Field(p, "name"), n.Name)
		switch n.Role {
		case RoleServer:
			servers++
		case RoleAgent:
		default:
			errs.Add(Field(p, "role"), "one of: server, agent", "unknown node role %q", n.Role)
		}
		checkAttach(&errs, Field(p, "router"), n.Router, routers, routerHint)
		if cut[n.Router] {
			errs.Add(Field(p, "router"), "attach it to a router of the fabric", "router %q is not connected to the fabric", n.Router)
		}
	}
	if servers != 1 {
		errs.Add("spec.nodes", "the lab runs exactly one server (control plane) and any number of agents",
			"found %d nodes with role server", servers)
	}

	roles := map[HostRole]int{}
	for i, h := range s.Hosts {
		p := Index("spec.hosts", i)
		checkName(&errs, Field(p, "name"), h.Name)
		claim(Field(p, "name"), h.Name)
		switch h.Role {
		case RoleClient, RoleWorld:
			roles[h.Role]++
		default:
			errs.Add(Field(p, "role"), "one of: client, world", "unknown host role %q", h.Role)
		}
		checkAttach(&errs, Field(p, "router"), h.Router, routers, routerHint)
		if h.MTU != 0 && (h.MTU < MinMTU || h.MTU > s.LinkMTU) {
			errs.Add(Field(p, "mtu"), fmt.Sprintf("from %d (IPv6's minimum) to %d (spec.linkMTU, the lab's other links), or unset for %d", MinMTU, s.LinkMTU, s.LinkMTU),
				"mtu %d is out of range", h.MTU)
		}
		if cut[h.Router] {
			errs.Add(Field(p, "router"), "attach it to a router of the fabric", "router %q is not connected to the fabric", h.Router)
		}
	}
	for _, r := range []HostRole{RoleClient, RoleWorld} {
		if roles[r] != 1 {
			errs.Add("spec.hosts", fmt.Sprintf("add exactly one host with role: %s", r),
				"found %d hosts with role %s", roles[r], r)
		}
	}

	appNames, namespaces, ids := map[string]string{}, map[string]string{}, map[int]string{}
	for i, a := range s.Applications {
		p := Index("spec.applications", i)
		checkName(&errs, Field(p, "name"), a.Name)
		if prev, ok := appNames[a.Name]; ok {
			errs.Add(Field(p, "name"), "application names must be unique", "name %q is already used at %s", a.Name, prev)
		}
		appNames[a.Name] = p
		if !dnsLabel.MatchString(a.Namespace) || len(a.Namespace) > 63 {
			errs.Add(Field(p, "namespace"), "a Kubernetes namespace name: lower-case letters, digits and '-'",
				"invalid namespace %q", a.Namespace)
		}
		if contains(ReservedNamespaces, a.Namespace) {
			errs.Add(Field(p, "namespace"), "use a namespace of the application's own (not "+strings.Join(ReservedNamespaces, ", ")+")",
				"namespace %q is reserved", a.Namespace)
		}
		if prev, ok := namespaces[a.Namespace]; ok {
			errs.Add(Field(p, "namespace"), "each application needs its own namespace (its pod pool is selected by namespace)",
				"namespace %q is already used at %s", a.Namespace, prev)
		}
		namespaces[a.Namespace] = p
		if a.ID != 0 {
			if a.ID < 1 || a.ID > 255 {
				errs.Add(Field(p, "id"), "an application id is the /64 index inside a /56: 1-255 (0 is the default pod pool)",
					"id %d out of range", a.ID)
			} else if prev, ok := ids[a.ID]; ok {
				errs.Add(Field(p, "id"), "pin each application to its own id", "id %d is already used at %s", a.ID, prev)
			}
			ids[a.ID] = p
		}
	}

	switch s.Datapath {
	case DatapathNative, DatapathTunnel:
	default:
		errs.Add("spec.datapath", "one of: native, tunnel", "unknown datapath %q", s.Datapath)
	}
	lb := s.LoadBalancer
	switch lb.Announcer {
	case AnnouncerCiliumBGP, AnnouncerMetalLB:
		if lb.SegmentRouter != "" {
			errs.Add("spec.loadBalancer.segmentRouter", "only announcer metallb-l2 has a layer 2 segment: leave it out",
				"segment router %q with announcer %s", lb.SegmentRouter, lb.Announcer)
		}
	case AnnouncerMetalLBL2:
		switch {
		case lb.SegmentRouter == "":
			errs.Add("spec.loadBalancer.segmentRouter", "name the router on the nodes' segment (or add a client host: its router is the default)",
				"no segment router")
		default:
			if _, ok := routers[lb.SegmentRouter]; !ok {
				errs.Add("spec.loadBalancer.segmentRouter", "name a router of spec.routers"+routerHint, "unknown router %q", lb.SegmentRouter)
			}
		}
		claim("spec.loadBalancer.announcer", SegmentMember)
	default:
		errs.Add("spec.loadBalancer.announcer", "one of: cilium-bgp, metallb, metallb-l2", "unknown announcer %q", lb.Announcer)
	}
	switch lb.Mode {
	case LBModeDSR:
		if s.Datapath == DatapathTunnel {
			errs.Add("spec.loadBalancer.mode", "DSR with IPv6 extension-header dispatch needs datapath: native; use mode: snat in tunnel mode",
				"dsr is not available with datapath tunnel")
		}
	case LBModeSNAT:
	default:
		errs.Add("spec.loadBalancer.mode", "one of: dsr, snat", "unknown load-balancing mode %q", lb.Mode)
	}
	if lb.Algorithm != "maglev" && lb.Algorithm != "random" {
		errs.Add("spec.loadBalancer.algorithm", "one of: maglev, random", "unknown algorithm %q", lb.Algorithm)
	}
	switch lb.Acceleration {
	case AccelerationDisabled, AccelerationNative, AccelerationBestEffort:
	default:
		errs.Add("spec.loadBalancer.acceleration", "one of: disabled, native, best-effort (Cilium's loadBalancer.acceleration)",
			"unknown acceleration %q", lb.Acceleration)
	}

	if m := s.LinkMTU; m < MinMTU || m > MaxLinkMTU {
		errs.Add("spec.linkMTU", fmt.Sprintf("from %d (IPv6's minimum) to %d (the default); native XDP on veth needs at most 3506", MinMTU, MaxLinkMTU),
			"link MTU %d is out of range", m)
	}
	if u := s.Upgrade.MaxUDPOutageMs; u < 1 || u > 600000 {
		errs.Add("spec.upgrade.maxUDPOutageMs", "1-600000 ms (the longest a UDP stream may go unanswered while Cilium's agents restart)",
			"maxUDPOutageMs %d out of range", u)
	}

	b := s.BGP
	if b.KeepaliveSeconds < 1 || b.KeepaliveSeconds > 3600 {
		errs.Add("spec.bgp.keepaliveSeconds", "1-3600 seconds", "keepalive %d out of range", b.KeepaliveSeconds)
	}
	if b.HoldSeconds < 3 || b.HoldSeconds > 65535 || b.HoldSeconds < b.KeepaliveSeconds {
		errs.Add("spec.bgp.holdSeconds", "3-65535 seconds and at least the keepalive (3x keepalive is usual)",
			"hold time %d is not valid with keepalive %d", b.HoldSeconds, b.KeepaliveSeconds)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"receiveIntervalMs", b.BFD.ReceiveIntervalMs}, {"transmitIntervalMs", b.BFD.TransmitIntervalMs}} {
		if f.v < 10 || f.v > 60000 {
			errs.Add("spec.bgp.bfd."+f.name, "10-60000 ms", "%s %d out of range", f.name, f.v)
		}
	}
	if b.BFD.DetectMultiplier < 2 || b.BFD.DetectMultiplier > 255 {
		errs.Add("spec.bgp.bfd.detectMultiplier", "2-255", "detect multiplier %d out of range", b.BFD.DetectMultiplier)
	}

	v := s.Versions
	if m := semver.FindStringSubmatch(v.Cilium); m == nil || !contains(SupportedCiliumMinors, m[1]+"."+m[2]) {
		errs.Add("spec.versions.cilium", "a Cilium release of "+strings.Join(SupportedCiliumMinors, ", ")+" such as 1.18.4 or 1.20.2",
			"unsupported Cilium version %q", v.Cilium)
	}
	if !semver.MatchString(v.MetalLB) || !strings.HasPrefix(v.MetalLB, "v") {
		errs.Add("spec.versions.metallb", "a MetalLB release such as v0.15.2", "invalid MetalLB version %q", v.MetalLB)
	}
	switch v.Kubernetes.Distribution {
	case DistK3s:
		if !k3sVersion.MatchString(v.Kubernetes.Version) {
			errs.Add("spec.versions.kubernetes.version", "a k3s release such as "+DefaultK3sVersion, "invalid k3s version %q", v.Kubernetes.Version)
		}
	case DistUpstream:
		if !upstreamVers.MatchString(v.Kubernetes.Version) {
			errs.Add("spec.versions.kubernetes.version", "a Kubernetes release such as "+DefaultK8sVersion, "invalid Kubernetes version %q", v.Kubernetes.Version)
		}
	default:
		errs.Add("spec.versions.kubernetes.distribution", "one of: upstream (built offline), k3s (public image)",
			"unknown distribution %q", v.Kubernetes.Distribution)
	}
	return errs
}

// CiliumMinor returns "1.20" for "1.20.2".
func CiliumMinor(version string) string {
	m := semver.FindStringSubmatch(version)
	if m == nil {
		return ""
	}
	return m[1] + "." + m[2]
}

// CheckName says why name cannot name a lab or a lab member (nil when it can): the one
// rule every name passes — the spec's, and the lab names down and locks accept — so a
// name never holds a path separator, "..", or anything a container name cannot.
func CheckName(name string) error {
	var errs ErrorList
	checkName(&errs, "", name)
	if len(errs) > 0 {
		return fmt.Errorf("%s: %s", errs[0].Detail, errs[0].Hint)
	}
	return nil
}

func checkName(errs *ErrorList, path, name string) {
	switch {
	case name == "":
		errs.Add(path, "give it a name: lower-case letters, digits and '-'", "name is required")
	case len(name) > MaxNameLen || !dnsLabel.MatchString(name):
		errs.Add(path, fmt.Sprintf("lower-case letters, digits and '-', at most %d characters, starting and ending with a letter or digit", MaxNameLen),
			"invalid name %q", name)
	}
}

func checkASN(errs *ErrorList, path string, asn uint32) {
	if asn == 0 || asn == 23456 || asn == 4294967295 {
		errs.Add(path, "a private ASN such as 64512-65534 or 4200000000-4294967294", "invalid ASN %d", asn)
	}
}

func checkAttach(errs *ErrorList, path, router string, routers map[string]int, hint string) {
	if router == "" {
		errs.Add(path, "name the router it attaches to"+hint, "router is required")
		return
	}
	if _, ok := routers[router]; !ok {
		errs.Add(path, "name a router of spec.routers"+hint, "unknown router %q", router)
	}
}

// reachable is the set of routers linked, directly or not, to the first one.
func reachable(s *LabSpec) map[string]bool {
	adj := map[string][]string{}
	for _, r := range s.Routers {
		for _, peer := range r.Links {
			adj[r.Name] = append(adj[r.Name], peer)
			adj[peer] = append(adj[peer], r.Name)
		}
	}
	seen := map[string]bool{}
	if len(s.Routers) == 0 {
		return seen
	}
	queue := []string{s.Routers[0].Name}
	seen[queue[0]] = true
	for len(queue) > 0 {
		r := queue[0]
		queue = queue[1:]
		for _, p := range adj[r] {
			if !seen[p] {
				seen[p] = true
				queue = append(queue, p)
			}
		}
	}
	return seen
}

// ReservedNamespaces are namespaces an application may not take: Kubernetes' own and
// the ones the lab installs its components into.
var ReservedNamespaces = []string{"default", "kube-system", "kube-public", "kube-node-lease", "metallb-system"}

func routerNames(s *LabSpec) []string {
	out := make([]string, 0, len(s.Routers))
	for _, r := range s.Routers {
		out = append(out, r.Name)
	}
	return out
}

func known(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return ": " + strings.Join(names, ", ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
