package conformance

import (
	"fmt"
	"net/netip"

	"v6lab.dev/v6lab/labs/plan"
)

// forbiddenRoute says why the design keeps a prefix out of the fabric's BGP ("" when
// it may be there): the fabric carries node links, external hosts, router loopbacks,
// each node's slice of a pod pool (exactly the pod mask size) and VIPs (/128s inside an
// application's ingress /64). The ULA service range, the management network, a node's
// own /128, a pod's /128 and anything outside the lab's blocks must never appear.
func forbiddenRoute(p *plan.Plan, prefix string) string {
	pfx, err := netip.ParsePrefix(prefix)
	if err != nil {
		return "not a prefix"
	}
	a := pfx.Addr()
	inApp := func(f func(plan.App) netip.Prefix) bool {
		for _, app := range p.Apps {
			if f(app).Contains(a) {
				return true
			}
		}
		return false
	}
	switch {
	case p.ServiceCIDR.Overlaps(pfx):
		return "the ClusterIP range is never routed"
	case p.Management.IPv6Subnet.Overlaps(pfx) || plan.ManagementBlock.Overlaps(pfx):
		return "the management network is not a data plane"
	case p.Pods.Block.Contains(a):
		if pfx.Bits() != p.PodMaskSize {
			return fmt.Sprintf("pod routes are the nodes' /%d slices", p.PodMaskSize)
		}
	case p.Ingress.Contains(a):
		if pfx.Bits() != 128 || !inApp(func(app plan.App) netip.Prefix { return app.Ingress }) {
			return "VIPs are /128s inside an application's ingress /64"
		}
	case p.Nodes.Block.Contains(a):
		for _, n := range p.KubeNodes {
			if pfx.Bits() == 128 && (a == n.Address || a == n.SpeakerAddress) {
				return "a node's own /128 leaked into the fabric"
			}
		}
	case p.External.Contains(a), p.Infra.Contains(a):
	default:
		return "outside the lab's address blocks"
	}
	return ""
}
