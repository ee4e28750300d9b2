package spec_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/topologies"
)

func TestEmbeddedLabsAreValid(t *testing.T) {
	for _, name := range topologies.Names() {
		t.Run(name, func(t *testing.T) {
			data, err := topologies.Get(name)
			require.NoError(t, err)
			l, errs := spec.Decode(data)
			require.Empty(t, errs)
			spec.SetDefaults(l)
			require.Empty(t, spec.Validate(l))
			assert.Equal(t, name, l.Metadata.Name)
		})
	}
}

// A spec with many problems reports all of them at once, each at its field path.
func TestDecodeReportsEveryProblemWithItsPath(t *testing.T) {
	doc := `apiVersion: v6lab.dev/v1alpha1
kind: Lab
metadata:
  name: bad
spec:
  routers:
    - name: r1
      role: spine
      asn: notanumber
      linkz: [r2]
    - name: r2
      role: core
      asn: 65002
  nodez: []
`
	l, errs := spec.Decode([]byte(doc))
	require.NotNil(t, l)
	byPath := map[string]spec.FieldError{}
	for _, e := range errs {
		byPath[e.Path] = e
	}
	require.Contains(t, byPath, "spec.routers[0].asn")
	assert.Equal(t, 9, byPath["spec.routers[0].asn"].Line)
	assert.Contains(t, byPath["spec.routers[0].asn"].Hint, "whole number")
	require.Contains(t, byPath, "spec.routers[0].linkz")
	assert.Contains(t, byPath["spec.routers[0].linkz"].Hint, `did you mean "links"`)
	require.Contains(t, byPath, "spec.nodez")
	assert.Contains(t, byPath["spec.nodez"].Hint, `did you mean "nodes"`)

	spec.SetDefaults(l)
	verrs := spec.Validate(l)
	paths := map[string]bool{}
	for _, e := range verrs {
		paths[e.Path] = true
		assert.NotEmpty(t, e.Hint, "every validation error has a hint: %v", e)
	}
	for _, want := range []string{"spec.routers[1].role", "spec.nodes", "spec.hosts"} {
		assert.True(t, paths[want], "missing error at %s in %v", want, verrs)
	}
}

func TestValidateCatchesCrossReferences(t *testing.T) {
	data, err := topologies.Get("default")
	require.NoError(t, err)
	l, errs := spec.Decode(data)
	require.Empty(t, errs)
	spec.SetDefaults(l)
	l.Spec.Nodes[1].Router = "nowhere"
	l.Spec.Hosts[0].Name = "leaf1" // clashes with a router
	l.Spec.Routers[2].ASN = l.Spec.Routers[1].ASN
	l.Spec.Routers[0].Links = append(l.Spec.Routers[0].Links, "leaf1") // declared twice
	l.Spec.Applications[1].ID = 1
	l.Spec.Datapath = spec.DatapathTunnel // with mode dsr
	l.Spec.Versions.Cilium = "1.15.0"
	l.Spec.Hosts[1].MTU = 1200 // below IPv6's minimum
	l.Spec.LoadBalancer.Acceleration = "xdp"
	errs = spec.Validate(l)
	want := []string{
		"spec.nodes[1].router", "spec.hosts[0].name", "spec.routers[2].asn",
		"spec.routers[0].links[2]", "spec.applications[1].id", "spec.loadBalancer.mode",
		"spec.versions.cilium", "spec.hosts[1].mtu", "spec.loadBalancer.acceleration",
	}
	got := map[string]bool{}
	for _, e := range errs {
		got[e.Path] = true
	}
	for _, w := range want {
		assert.True(t, got[w], "missing %s in:\n%v", w, errs)
	}
	assert.Len(t, errs, len(want), "unexpected extra errors:\n%v", errs)
}

func TestErrorListFormatsPathLineAndHint(t *testing.T) {
	errs := spec.ErrorList{{Path: "spec.x", Line: 3, Detail: "bad", Hint: "fix it"}}
	msg := errs.Error()
	assert.Contains(t, msg, "1 problem(s)")
	assert.Contains(t, msg, "spec.x: bad (line 3)")
	assert.Contains(t, msg, "hint: fix it")
	assert.Nil(t, spec.ErrorList{}.Err())
}

func TestDuplicateKeyAndEmptyDocument(t *testing.T) {
	_, errs := spec.Decode([]byte("apiVersion: a\napiVersion: b\n"))
	require.NotEmpty(t, errs)
	assert.Equal(t, "apiVersion", errs[0].Path)
	assert.Contains(t, errs[0].Detail, "twice")

	l, errs := spec.Decode([]byte(""))
	assert.Nil(t, l)
	require.Len(t, errs, 1)
	assert.Contains(t, errs[0].Detail, "empty")

	l, errs = spec.Decode([]byte("a: [b"))
	assert.Nil(t, l)
	require.Len(t, errs, 1)
	assert.True(t, strings.Contains(errs[0].Detail, "YAML"))
}

func TestDefaultsDoNotOverride(t *testing.T) {
	l := &spec.Lab{Spec: spec.LabSpec{Datapath: spec.DatapathTunnel, BGP: spec.BGP{KeepaliveSeconds: 10}}}
	spec.SetDefaults(l)
	assert.Equal(t, spec.LBModeSNAT, l.Spec.LoadBalancer.Mode, "tunnel mode defaults to snat")
	assert.Equal(t, 30, l.Spec.BGP.HoldSeconds, "hold defaults to 3x keepalive")
	assert.Equal(t, spec.DefaultParent, l.Spec.Addressing.Parent)
}

func FuzzDecode(f *testing.F) {
	for _, n := range topologies.Names() {
		data, _ := topologies.Get(n)
		f.Add(data)
	}
	f.Add([]byte("spec: {routers: [{name: a, links: [a, a]}]}"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, _ := spec.Decode(data)
		if l != nil {
			spec.SetDefaults(l)
			_ = spec.Validate(l)
		}
	})
}

func TestTypeErrorHints(t *testing.T) {
	doc := "apiVersion: v6lab.dev/v1alpha1\nkind: Lab\nmetadata: [x]\nspec:\n  datapath: [native]\n  bgp:\n    bfd:\n      enabled: maybe\n  routers: {a: b}\n"
	_, errs := spec.Decode([]byte(doc))
	hints := map[string]string{}
	for _, e := range errs {
		hints[e.Path] = e.Hint
	}
	assert.Equal(t, "expected a mapping (Metadata)", hints["metadata"])
	assert.Equal(t, "expected a string", hints["spec.datapath"])
	assert.Equal(t, "expected true or false", hints["spec.bgp.bfd.enabled"])
	assert.Equal(t, "expected a list", hints["spec.routers"])
}

// The layer 2 segment: its router defaults to the client's, must exist, belongs to the
// metallb-l2 announcer only, and its switch's name is taken.
func TestSegmentRouter(t *testing.T) {
	load := func(t *testing.T) *spec.Lab { return decodeEmbedded(t, "metallb-l2") }
	l := load(t)
	l.Spec.LoadBalancer.SegmentRouter = ""
	spec.SetDefaults(l)
	assert.Equal(t, "edge1", l.Spec.LoadBalancer.SegmentRouter, "the client's router")
	assert.True(t, l.Spec.LoadBalancer.UsesMetalLB())

	paths := func(errs spec.ErrorList) map[string]string {
		m := map[string]string{}
		for _, e := range errs {
			m[e.Path] = e.Detail + " | " + e.Hint
		}
		return m
	}
	l = load(t)
	l.Spec.LoadBalancer.SegmentRouter = "nowhere"
	spec.SetDefaults(l)
	got := paths(spec.Validate(l))
	require.Contains(t, got, "spec.loadBalancer.segmentRouter")
	assert.Contains(t, got["spec.loadBalancer.segmentRouter"], `unknown router "nowhere"`)
	assert.Contains(t, got["spec.loadBalancer.segmentRouter"], "edge1")

	l = load(t)
	l.Spec.LoadBalancer.Announcer = spec.AnnouncerMetalLB
	spec.SetDefaults(l)
	got = paths(spec.Validate(l))
	assert.Contains(t, got["spec.loadBalancer.segmentRouter"], "only announcer metallb-l2")

	l = load(t)
	l.Spec.Hosts = nil
	l.Spec.LoadBalancer.SegmentRouter = ""
	l.Spec.Nodes[0].Name = spec.SegmentMember
	spec.SetDefaults(l)
	got = paths(spec.Validate(l))
	assert.Contains(t, got["spec.loadBalancer.segmentRouter"], "no segment router")
	assert.Contains(t, got["spec.loadBalancer.announcer"], `name "segment" is already used`)
}

// spec.linkMTU: default 9500, 1280-9500, and a host's own mtu at most the lab's.
func TestLinkMTU(t *testing.T) {
	load := func(t *testing.T) *spec.Lab { return decodeEmbedded(t, "default") }
	l := load(t)
	spec.SetDefaults(l)
	assert.Equal(t, spec.MaxLinkMTU, l.Spec.LinkMTU)

	for _, bad := range []int{1279, 9501} {
		l = load(t)
		l.Spec.LinkMTU = bad
		spec.SetDefaults(l)
		errs := spec.Validate(l)
		require.Len(t, errs, 1, bad)
		assert.Equal(t, "spec.linkMTU", errs[0].Path)
		assert.Contains(t, errs[0].Hint, "3506")
	}
	l = load(t)
	l.Spec.LinkMTU = 3500
	l.Spec.Hosts[0].MTU = 4000
	spec.SetDefaults(l)
	errs := spec.Validate(l)
	require.Len(t, errs, 1)
	assert.Equal(t, "spec.hosts[0].mtu", errs[0].Path)
	assert.Contains(t, errs[0].Hint, "to 3500 (spec.linkMTU")
}

// decodeEmbedded decodes an embedded lab, without defaults.
func decodeEmbedded(t *testing.T, name string) *spec.Lab {
	t.Helper()
	data, err := topologies.Get(name)
	require.NoError(t, err)
	l, errs := spec.Decode(data)
	require.Empty(t, errs)
	return l
}
