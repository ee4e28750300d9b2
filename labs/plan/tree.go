package plan

import (
	"fmt"
	"io"
	"strings"
)

// WriteTree prints the plan as the seed article draws it: the parent block, its /56
// blocks and their /64s, each with a comment saying what it is for.
func (p *Plan) WriteTree(w io.Writer) error {
	type row struct {
		depth   int
		prefix  string
		comment string
	}
	var rows []row
	add := func(depth int, prefix, format string, args ...any) {
		rows = append(rows, row{depth, prefix, fmt.Sprintf(format, args...)})
	}
	add(0, p.Parent.String(), "Parent address block (lab %s)", p.Lab)
	add(1, p.Nodes.Block.String(), "Node address pool")
	add(2, p.Nodes.Control.String(), "Control nodes%s", p.nodesIn(true))
	add(2, p.Nodes.Worker.String(), "Worker nodes%s", p.nodesIn(false))
	add(2, p.Nodes.Reserved.String(), "reserved")
	if seg := p.Segment; seg != nil {
		add(2, seg.Subnet.String(), "Layer 2 segment (switch %s): %s %s%s", seg.Switch, seg.Router, seg.RouterAddr, p.segmentNodes())
		for _, a := range p.Apps {
			first, last := p.VIPRange(a)
			add(3, p.VIPBlock(a).String(), "Application %s VIPs %s-%s (MetalLB layer 2, NDP)", a.Name, first, last)
		}
	}
	add(1, p.Ingress.String(), "Ingress CIDR / LoadBalancer VIP block")
	for _, a := range p.Apps {
		add(2, a.Ingress.String(), "Application %s (namespace %s)", a.Name, a.Namespace)
	}
	add(1, p.Pods.Block.String(), "PodIPPool block (each node gets a /%d of each pool)", p.PodMaskSize)
	add(2, p.Pods.Default.String(), "Default pool")
	for _, a := range p.Apps {
		add(2, a.PodPool.String(), "Application %s", a.Name)
	}
	add(1, p.Reserved.String(), "(Reserved)")
	add(1, p.External.String(), "External hosts")
	for _, h := range p.Hosts {
		add(2, h.Subnet.String(), "%s (%s) %s, gateway %s %s", h.Name, h.Role, h.Address, h.Router, h.Gateway)
	}
	add(1, p.Infra.String(), "Infrastructure: router loopbacks")
	for _, r := range p.Routers {
		add(2, r.Loopback.String()+"/128", "%s (%s) AS%d, router-id %s", r.Name, r.Role, r.ASN, r.RouterID)
	}
	add(0, p.ServiceCIDR.String(), "ServiceCIDR (ClusterIP; ULA, not routed)")
	add(1, p.ClusterDNS.String(), "cluster DNS (kube-system/kube-dns: CoreDNS)")
	add(0, p.Management.IPv6Subnet.String(), "Management network %s (ULA; not a data plane)", p.Management.Network)

	width := 0
	for _, r := range rows {
		width = max(width, len(indent(r.depth))+len(r.prefix))
	}
	for _, r := range rows {
		left := indent(r.depth) + r.prefix
		if _, err := fmt.Fprintf(w, "%-*s  # %s\n", width, left, r.comment); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Links (fabric links are BGP unnumbered, IPv6 link-local only):")
	for _, l := range p.Links {
		detail := ""
		switch l.Kind {
		case LinkNode:
			for _, n := range p.KubeNodes {
				if n.Name == l.B.Node {
					detail = fmt.Sprintf("  %s node-ip %s, gateway %s, AS%d <-> AS%d", n.Link, n.Address, n.Gateway, n.ASN, n.RouterASN)
				}
			}
		case LinkSegment:
			if port := p.Segment.Port(l.B.Node); port != nil {
				detail = fmt.Sprintf("  %s/%d", port.Address, p.Segment.Subnet.Bits())
			} else if l.A.Node == p.Segment.Router {
				detail = fmt.Sprintf("  %s/%d", p.Segment.RouterAddr, p.Segment.Subnet.Bits())
			}
		case LinkHost:
			for _, h := range p.Hosts {
				if h.Name == l.B.Node {
					detail = fmt.Sprintf("  %s", h.Subnet)
				}
			}
		}
		fmt.Fprintf(w, "  %-7s %s:%s <-> %s:%s%s\n", l.Kind, l.A.Node, l.A.Iface, l.B.Node, l.B.Iface, detail)
	}
	return nil
}

func (p *Plan) segmentNodes() string {
	var parts []string
	for _, port := range p.Segment.Ports {
		parts = append(parts, fmt.Sprintf("%s %s", port.Node, port.Address))
	}
	return ", " + strings.Join(parts, ", ")
}

func (p *Plan) nodesIn(control bool) string {
	var parts []string
	for _, n := range p.KubeNodes {
		if (n.Role == "server") == control {
			parts = append(parts, fmt.Sprintf("%s %s", n.Name, n.Address))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return ": " + strings.Join(parts, ", ")
}

func indent(depth int) string {
	switch depth {
	case 0:
		return ""
	case 1:
		return "  |-- "
	default:
		return strings.Repeat("  ", depth) + "\\-- "
	}
}
