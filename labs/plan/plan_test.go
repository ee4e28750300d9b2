package plan_test

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/topologies"
)

func load(t testing.TB, name string) *spec.Lab {
	t.Helper()
	data, err := topologies.Get(name)
	require.NoError(t, err)
	l, errs := spec.Decode(data)
	require.Empty(t, errs)
	spec.SetDefaults(l)
	require.Empty(t, spec.Validate(l))
	return l
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func TestDefaultPlanFollowsTheSeedLayout(t *testing.T) {
	p, err := plan.New(load(t, "default"))
	require.NoError(t, err)
	assert.Equal(t, pfx("2001:db8::/48"), p.Parent)
	assert.Equal(t, pfx("2001:db8::/56"), p.Nodes.Block)
	assert.Equal(t, pfx("2001:db8::/64"), p.Nodes.Control)
	assert.Equal(t, pfx("2001:db8:0:1::/64"), p.Nodes.Worker)
	assert.Equal(t, pfx("2001:db8:0:2::/64"), p.Nodes.Reserved)
	assert.Equal(t, pfx("2001:db8:0:100::/56"), p.Ingress)
	assert.Equal(t, pfx("2001:db8:0:a00::/56"), p.Pods.Block)
	assert.Equal(t, pfx("2001:db8:0:a00::/64"), p.Pods.Default)
	assert.Equal(t, pfx("2001:db8:0:b00::/56"), p.Reserved)
	require.Len(t, p.Apps, 2)
	assert.Equal(t, pfx("2001:db8:0:a01::/64"), p.Apps[0].PodPool)
	assert.Equal(t, pfx("2001:db8:0:101::/64"), p.Apps[0].Ingress)
	assert.Equal(t, pfx("2001:db8:0:a02::/64"), p.Apps[1].PodPool)

	server := p.Server()
	require.NotNil(t, server)
	assert.Equal(t, addr("2001:db8::12"), server.Address)
	assert.Equal(t, addr("2001:db8::11"), server.Gateway)
	assert.True(t, p.Nodes.Control.Contains(server.Address))
	for _, n := range p.KubeNodes {
		assert.True(t, n.Link.Contains(n.Address) && n.Link.Contains(n.Gateway) && n.Link.Contains(n.SpeakerAddress), n.Name)
		if n.Role == spec.RoleAgent {
			assert.True(t, p.Nodes.Worker.Contains(n.Address), n.Name)
		}
	}
	assert.True(t, p.ServiceCIDR.Addr().IsPrivate(), "service CIDR is ULA")
}

// Every address and interface in the plan is unique, and every data-plane address is
// IPv6 inside the parent block.
func TestPlanHasNoDuplicatesAndNoIPv4(t *testing.T) {
	for _, name := range topologies.Names() {
		p, err := plan.New(load(t, name))
		require.NoError(t, err)
		seen := map[netip.Addr]string{}
		claim := func(a netip.Addr, who string) {
			require.True(t, a.Is6() && !a.Is4In6(), "%s: %s is not IPv6", who, a)
			require.True(t, p.Parent.Contains(a), "%s: %s outside %s", who, a, p.Parent)
			if prev, dup := seen[a]; dup {
				t.Fatalf("%s and %s share %s", prev, who, a)
			}
			seen[a] = who
		}
		for _, r := range p.Routers {
			claim(r.Loopback, r.Name+" loopback")
			ifs := map[string]bool{}
			for _, i := range r.Interfaces {
				require.False(t, ifs[i.Name], "%s has %s twice", r.Name, i.Name)
				ifs[i.Name] = true
				if i.Address.IsValid() {
					claim(i.Address.Addr(), r.Name+":"+i.Name)
				}
			}
		}
		for _, n := range p.KubeNodes {
			claim(n.Address, n.Name)
			claim(n.SpeakerAddress, n.Name+" speaker")
		}
		for _, h := range p.Hosts {
			claim(h.Address, h.Name)
		}
		blocks := []netip.Prefix{p.Nodes.Block, p.Ingress, p.Pods.Block, p.Reserved, p.External, p.Infra}
		for i := range blocks {
			for j := i + 1; j < len(blocks); j++ {
				assert.False(t, blocks[i].Overlaps(blocks[j]), "%s overlaps %s", blocks[i], blocks[j])
			}
		}
	}
}

// Appending an application, or inserting one with an unused pinned id, moves nothing.
func TestAddingAnApplicationMovesNothing(t *testing.T) {
	l := load(t, "default")
	before, err := plan.New(l)
	require.NoError(t, err)

	l2 := load(t, "default")
	l2.Spec.Applications = append(l2.Spec.Applications, spec.Application{Name: "app-c", Namespace: "app-c"})
	l2.Spec.Applications = append([]spec.Application{{Name: "app-z", Namespace: "app-z", ID: 9}}, l2.Spec.Applications...)
	after, err := plan.New(l2)
	require.NoError(t, err)

	for _, a := range before.Apps {
		var found bool
		for _, b := range after.Apps {
			if b.Name == a.Name {
				found = true
				assert.Equal(t, a, b)
			}
		}
		assert.True(t, found, a.Name)
	}
	assert.Equal(t, before.Routers, after.Routers)
	assert.Equal(t, before.KubeNodes, after.KubeNodes)
	assert.Equal(t, before.Hosts, after.Hosts)
}

func TestUnpinnedApplicationsSkipPinnedIDs(t *testing.T) {
	l := load(t, "default")
	l.Spec.Applications = []spec.Application{
		{Name: "a", Namespace: "a"}, {Name: "b", Namespace: "b", ID: 1}, {Name: "c", Namespace: "c"}}
	p, err := plan.New(l)
	require.NoError(t, err)
	ids := []int{p.Apps[0].ID, p.Apps[1].ID, p.Apps[2].ID}
	assert.Equal(t, []int{2, 1, 3}, ids)
}

func TestPlanErrorsAreAllReportedWithPaths(t *testing.T) {
	l := load(t, "default")
	l.Spec.Addressing.ServiceCIDR = "10.96.0.0/12"
	l.Spec.Addressing.PodMaskSize = 64
	l.Spec.Applications[0].PodPool = "2001:db8:0:a05::/80" // not a /64
	l.Spec.Applications[1].Ingress = "2001:db8:0:a03::/64" // outside the ingress block
	l.Spec.Applications = append(l.Spec.Applications, spec.Application{
		Name: "app-c", Namespace: "app-c", PodPool: "2001:db8:0:a02::/64"}) // app-b's pool
	_, err := plan.New(l)
	require.Error(t, err)
	var list spec.ErrorList
	require.ErrorAs(t, err, &list)
	got := map[string]string{}
	for _, e := range list {
		got[e.Path] = e.Detail + " / " + e.Hint
	}
	assert.Contains(t, got["spec.addressing.serviceCIDR"], "IPv4")
	assert.Contains(t, got["spec.addressing.podMaskSize"], "out of range")
	assert.Contains(t, got["spec.applications[0].podPool"], "not a /64")
	assert.Contains(t, got["spec.applications[0].podPool"], "RFC 7421")
	assert.Contains(t, got["spec.applications[1].ingress"], "outside")
	assert.Contains(t, got["spec.applications[2].podPool"], "overlaps application app-b")
}

func TestParentChecks(t *testing.T) {
	cases := map[string]string{
		"2001:db8::/56":    "too small",
		"192.0.2.0/24":     "IPv4",
		"2001:db8::1/48":   "host bits",
		"not-a-prefix":     "not a prefix",
		"2001:db8::/40":    "",
		"2001:db8:42::/48": "",
	}
	for parent, want := range cases {
		t.Run(parent, func(t *testing.T) {
			l := load(t, "default")
			l.Spec.Addressing.Parent = parent
			p, err := plan.New(l)
			if want == "" {
				require.NoError(t, err)
				assert.True(t, p.Parent.Contains(p.Server().Address))
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), want)
			assert.Contains(t, err.Error(), "spec.addressing.parent")
		})
	}
}

func TestServiceCIDROverlapAndULA(t *testing.T) {
	l := load(t, "default")
	l.Spec.Addressing.ServiceCIDR = "2001:db8:0:5::/112"
	_, err := plan.New(l)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "overlaps the parent")
	assert.Contains(t, err.Error(), "not a ULA")
}

func TestTreeAndJSON(t *testing.T) {
	p, err := plan.New(load(t, "default"))
	require.NoError(t, err)
	var b strings.Builder
	require.NoError(t, p.WriteTree(&b))
	out := b.String()
	for _, want := range []string{
		"2001:db8::/48", "|-- 2001:db8::/56", `\-- 2001:db8::/64`, "Control nodes: server1 2001:db8::12",
		"Application app-a", "Default pool", "(Reserved)", "ServiceCIDR", "fabric  edge1:eth1 <-> leaf1:eth1",
	} {
		assert.Contains(t, out, want)
	}
	j, err := json.Marshal(p)
	require.NoError(t, err)
	var back map[string]any
	require.NoError(t, json.Unmarshal(j, &back))
	assert.Equal(t, "2001:db8::/48", back["parent"])
	assert.Len(t, back["nodes"], 3)
}

func TestTwoLabsGetDifferentManagementNetworks(t *testing.T) {
	a, err := plan.New(load(t, "default"))
	require.NoError(t, err)
	b, err := plan.New(load(t, "metallb"))
	require.NoError(t, err)
	assert.NotEqual(t, a.Management.IPv6Subnet, b.Management.IPv6Subnet)
	assert.NotEqual(t, a.Management.Network, b.Management.Network)
	assert.True(t, a.Management.IPv6Subnet.Addr().IsPrivate())
}

func FuzzPlan(f *testing.F) {
	for _, n := range topologies.Names() {
		data, _ := topologies.Get(n)
		f.Add(data, "2001:db8::/48", 80, uint8(3))
	}
	f.Add([]byte("{}"), "::/0", 127, uint8(255))
	f.Fuzz(func(t *testing.T, data []byte, parent string, mask int, apps uint8) {
		l, errs := spec.Decode(data)
		if l == nil || len(errs) > 0 {
			return
		}
		spec.SetDefaults(l)
		l.Spec.Addressing.Parent = parent
		l.Spec.Addressing.PodMaskSize = mask
		for i := 0; i < int(apps); i++ {
			l.Spec.Applications = append(l.Spec.Applications, spec.Application{Name: "x", ID: i})
		}
		if len(spec.Validate(l)) > 0 {
			// The planner must not panic on invalid input either.
			_, _ = plan.New(l)
			return
		}
		p, err := plan.New(l)
		if err != nil {
			return
		}
		for _, a := range p.Apps {
			if a.PodPool.Bits() != 64 || !p.Pods.Block.Contains(a.PodPool.Addr()) {
				t.Fatalf("bad pod pool %s", a.PodPool)
			}
		}
	})
}

// The metallb-l2 lab's segment: the node pool's fourth /64, the router at ::1, the
// nodes at ::11.., a switch port each, and each application's VIPs from its /112.
func TestSegmentPlan(t *testing.T) {
	p, err := plan.New(load(t, "metallb-l2"))
	require.NoError(t, err)
	seg := p.Segment
	require.NotNil(t, seg)
	assert.Equal(t, pfx("2001:db8:0:3::/64"), seg.Subnet)
	assert.Equal(t, "edge1", seg.Router)
	assert.Equal(t, addr("2001:db8:0:3::1"), seg.RouterAddr)
	assert.Equal(t, spec.SegmentMember, seg.Switch)
	require.Len(t, seg.Ports, 3)
	assert.Equal(t, plan.SegmentPort{Node: "server1", Iface: "eth2", Address: addr("2001:db8:0:3::11"), SwitchIface: "eth2"}, seg.Ports[0])
	assert.Equal(t, "eth4", seg.Port("agent2").SwitchIface)
	assert.Nil(t, seg.Port("edge1"))

	// The router's new interface comes after its fabric and host links.
	r := p.Router("edge1")
	last := r.Interfaces[len(r.Interfaces)-1]
	assert.Equal(t, plan.Interface{Name: "eth5", Kind: plan.LinkSegment, Peer: "segment", PeerIface: "eth1", Address: pfx("2001:db8:0:3::1/64")}, last)
	segLinks := 0
	for _, l := range p.Links {
		if l.Kind == plan.LinkSegment {
			segLinks++
		}
	}
	assert.Equal(t, 4, segLinks, "the router's port and one per node")
	assert.Equal(t, addr("fd36:6c61:6200:a17f::300"), p.Management.Addresses["segment"])

	first, lastVIP := p.VIPRange(p.Apps[1])
	assert.Equal(t, pfx("2001:db8:0:3::2:0/112"), p.VIPBlock(p.Apps[1]))
	assert.Equal(t, addr("2001:db8:0:3::2:1"), first)
	assert.Equal(t, addr("2001:db8:0:3::2:ffff"), lastVIP)
	for _, port := range seg.Ports {
		assert.False(t, p.VIPBlock(p.Apps[0]).Contains(port.Address))
	}

	// Without a segment: the ingress /64's ::1-::ffff, as always.
	d, err := plan.New(load(t, "default"))
	require.NoError(t, err)
	assert.Nil(t, d.Segment)
	first, lastVIP = d.VIPRange(d.Apps[0])
	assert.Equal(t, addr("2001:db8:0:101::1"), first)
	assert.Equal(t, addr("2001:db8:0:101::ffff"), lastVIP)
}

// The lab's linkMTU goes on every link whose host sets none; 9500 (containerlab's
// default) on none.
func TestLinkMTUOnEveryLink(t *testing.T) {
	p, err := plan.New(load(t, "xdp"))
	require.NoError(t, err)
	for _, l := range p.Links {
		assert.Equal(t, 3500, l.MTU, "%s %s-%s", l.Kind, l.A.Node, l.B.Node)
	}
	p, err = plan.New(load(t, "tunnel"))
	require.NoError(t, err)
	for _, l := range p.Links {
		if l.Kind == plan.LinkHost && l.B.Node == "client" {
			assert.Equal(t, 9430, l.MTU, "the tunnel lab's client link sets its own")
		} else {
			assert.Zero(t, l.MTU, "%s %s-%s: containerlab's default", l.Kind, l.A.Node, l.B.Node)
		}
	}
}
