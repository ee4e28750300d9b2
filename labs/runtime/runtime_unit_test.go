package runtime

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"v6lab.dev/v6lab/labs/lab"
)

func TestExpectedSessions(t *testing.T) {
	l, err := lab.Load("")
	require.NoError(t, err)
	underlay := map[string]bool{}
	for _, m := range Members(l.Plan, true) {
		underlay[m] = true
	}
	want := expectedSessions(l.Plan, underlay)
	assert.Equal(t, []string{"eth1", "eth2"}, want["edge1"])
	assert.Equal(t, []string{"eth1", "eth2"}, want["leaf1"], "node sessions wait for the nodes")
	underlay["server1"] = true
	want = expectedSessions(l.Plan, underlay)
	assert.Equal(t, []string{"eth1", "eth2", "2001:db8::12"}, want["leaf1"])
}

func TestUnquoteComment(t *testing.T) {
	in := []string{"-D", "DOCKER-USER", "-i", "br-1", "-m", "comment", "--comment", `"set`, `by`, `containerlab"`, "-j", "ACCEPT"}
	assert.Equal(t, []string{"-D", "DOCKER-USER", "-i", "br-1", "-m", "comment", "--comment", "set by containerlab", "-j", "ACCEPT"}, unquoteComment(in))
	assert.Equal(t, "br-0123456789ab", bridgeName("0123456789abcdef\n"))
}

// The steps Up runs, resolved once: every step for a lab of nodes, MetalLB's only
// where it announces, the node steps neither for an underlay-only lab nor with public
// images (the nodes then come up by themselves: k3s), the Cilium release resolved once.
func TestUpSteps(t *testing.T) {
	run := func(spec string, o Options) []string {
		l, err := lab.Load(spec)
		require.NoError(t, err)
		o.StateDir = t.TempDir()
		u, err := newUp(l, o)
		require.NoError(t, err)
		var names []string
		for _, s := range u.steps() {
			if !s.skip {
				names = append(names, s.name)
			}
		}
		return names
	}
	all := []string{"host setup", "images", "render", "node files", "deploy", "bgp", "kubernetes", "cilium", "dns"}
	assert.Equal(t, all, run("", Options{}))
	assert.Equal(t, []string{"host setup", "images", "render", "node files", "deploy", "xdp peers", "bgp", "kubernetes", "cilium", "metallb", "dns"},
		run("embedded:metallb", Options{}), "the seed's MetalLB lab asks for XDP acceleration")
	assert.Equal(t, []string{"host setup", "images", "render", "deploy", "bgp"}, run("", Options{UnderlayOnly: true}))
	assert.Equal(t, all[:len(all)-2], run("", Options{NoCNI: true}))

	l, err := lab.Load("")
	require.NoError(t, err)
	l.Spec.Spec.Versions.Cilium = "1.20"
	u, err := newUp(l, Options{StateDir: t.TempDir()})
	require.NoError(t, err, "a release that cannot be built fails only the steps that need it")
	_, err = u.nodeFiles(t.Context())
	assert.ErrorContains(t, err, `"1.20" is not a Cilium release`)
}
