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
