// Package frr renders the configuration of each underlay router: typed structs in, an
// embedded template out (the shape of MetalLB's FRR renderer). The result is plain
// frr.conf text that `vtysh --dryrun` accepts.
package frr

import (
	"bytes"
	"embed"
	"fmt"
	"net/netip"
	"text/template"

	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/spec"
)

//go:embed templates/*.tmpl
var templates embed.FS

var tmpl = template.Must(template.ParseFS(templates, "templates/*.tmpl"))

// Config is everything one router's frr.conf says.
type Config struct {
	Hostname  string
	ASN       uint32
	RouterID  netip.Addr
	Loopback  netip.Addr
	Keepalive int
	Hold      int
	Addressed []Interface // node and host links: a GUA on the router side
	Fabric    []Interface // unnumbered BGP links to other routers
	BFD       *BFDProfile
	NodeASN   uint32
	// Nodes are the Cilium BGP speakers (node-ip). Cilium's BGP control plane has no
	// BFD in the versions v6lab supports, so BFD runs on fabric and MetalLB sessions.
	Nodes    []Neighbor
	Speakers []Neighbor // MetalLB speakers (each node's second address); empty unless metallb
	// PrefixLists: LAB (everything the fabric carries), FROM-NODES (what Cilium
	// speakers may announce: pod pools in native routing, VIP blocks with the
	// cilium-bgp announcer) and FROM-SPEAKERS (VIP blocks, from MetalLB speakers).
	PrefixLists []PrefixList
}

// PrefixList is an ipv6 prefix-list whose entries each permit a block and anything
// longer inside it ("le 128").
type PrefixList struct {
	Name    string
	Entries []Entry
}

// Entry is one permit line.
type Entry struct {
	Seq    int
	Prefix netip.Prefix
}

func prefixList(name string, blocks ...netip.Prefix) PrefixList {
	pl := PrefixList{Name: name}
	for i, b := range blocks {
		pl.Entries = append(pl.Entries, Entry{Seq: 5 * (i + 1), Prefix: b})
	}
	return pl
}

// Interface is a router interface.
type Interface struct {
	Name        string
	Description string
	Address     netip.Prefix
}

// Neighbor is a BGP peer on a node link.
type Neighbor struct {
	Name    string
	Address netip.Addr
}

// BFDProfile is the lab's single BFD profile.
type BFDProfile struct {
	Name             string
	ReceiveMs        int
	TransmitMs       int
	DetectMultiplier int
}

// BFDProfileName is the name of the profile every BFD session uses.
const BFDProfileName = "v6lab"

// ForRouter builds the config of one router from the plan.
func ForRouter(p *plan.Plan, r *plan.Router) Config {
	s := p.Spec
	c := Config{
		Hostname: r.Name, ASN: r.ASN, RouterID: r.RouterID, Loopback: r.Loopback,
		Keepalive: s.BGP.KeepaliveSeconds, Hold: s.BGP.HoldSeconds,
		NodeASN: p.ClusterASN,
	}
	if s.BGP.BFD.Enabled {
		c.BFD = &BFDProfile{Name: BFDProfileName, ReceiveMs: s.BGP.BFD.ReceiveIntervalMs,
			TransmitMs: s.BGP.BFD.TransmitIntervalMs, DetectMultiplier: s.BGP.BFD.DetectMultiplier}
	}
	var fromNodes, vips []netip.Prefix
	if s.Datapath == spec.DatapathNative {
		// Native routing: pods are reachable only through the routes their nodes announce.
		fromNodes = append(fromNodes, p.Pods.Default)
		for _, a := range p.Apps {
			fromNodes = append(fromNodes, a.PodPool)
		}
	}
	for _, a := range p.Apps {
		vips = append(vips, p.VIPBlock(a))
	}
	if s.LoadBalancer.Announcer == spec.AnnouncerCiliumBGP {
		fromNodes = append(fromNodes, vips...)
	}
	c.PrefixLists = []PrefixList{prefixList("LAB", p.Parent), prefixList("FROM-NODES", fromNodes...)}
	if s.LoadBalancer.Announcer == spec.AnnouncerMetalLB {
		c.PrefixLists = append(c.PrefixLists, prefixList("FROM-SPEAKERS", vips...))
	}
	for _, ifc := range r.Interfaces {
		switch ifc.Kind {
		case plan.LinkFabric:
			c.Fabric = append(c.Fabric, Interface{Name: ifc.Name, Description: fmt.Sprintf("fabric to %s:%s", ifc.Peer, ifc.PeerIface)})
		case plan.LinkNode, plan.LinkHost, plan.LinkSegment:
			c.Addressed = append(c.Addressed, Interface{Name: ifc.Name,
				Description: fmt.Sprintf("%s %s:%s", ifc.Kind, ifc.Peer, ifc.PeerIface), Address: ifc.Address})
		}
	}
	for _, n := range p.KubeNodes {
		if n.Router != r.Name {
			continue
		}
		c.Nodes = append(c.Nodes, Neighbor{Name: n.Name, Address: n.Address})
		if s.LoadBalancer.Announcer == spec.AnnouncerMetalLB {
			c.Speakers = append(c.Speakers, Neighbor{Name: n.Name, Address: n.SpeakerAddress})
		}
	}
	return c
}

// Render returns the frr.conf text of a config.
func Render(c Config) ([]byte, error) {
	var b bytes.Buffer
	if err := tmpl.ExecuteTemplate(&b, "frr.conf.tmpl", c); err != nil {
		return nil, fmt.Errorf("rendering frr.conf for %s: %w", c.Hostname, err)
	}
	return b.Bytes(), nil
}

// Daemons returns the /etc/frr/daemons file: zebra, bgpd, bfdd and staticd, each with
// its vty bound to loopback only.
func Daemons() []byte {
	var b bytes.Buffer
	if err := tmpl.ExecuteTemplate(&b, "daemons.tmpl", nil); err != nil {
		panic(err) // static template, covered by tests
	}
	return b.Bytes()
}

// StartPath is where a router's start script is mounted; the topology runs it as the
// router's command, with any FRR image (v6lab's or the FRR project's).
const StartPath = "/usr/local/sbin/v6lab-frr-start"

// Start renders a router's start script: it waits until the router's lab interfaces
// exist (containerlab attaches them after the container starts), then starts FRR.
func Start(r *plan.Router) []byte {
	var ifaces []string
	for _, i := range r.Interfaces {
		ifaces = append(ifaces, i.Name)
	}
	var b bytes.Buffer
	if err := tmpl.ExecuteTemplate(&b, "start.tmpl", ifaces); err != nil {
		panic(err) // static template, covered by tests
	}
	return b.Bytes()
}

// VtyshConf is /etc/frr/vtysh.conf.
func VtyshConf() []byte { return []byte("service integrated-vtysh-config\n") }
