package runtime

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"v6lab.dev/v6lab/labs/lab"
)

// testdata/*.json were captured from FRR 8.4.4 in a v6lab lab (leaf1 of the default lab,
// underlay only: fabric sessions up, node sessions Active).
func TestParseSummaryFromRealFRR(t *testing.T) {
	data, err := os.ReadFile("testdata/leaf1-summary.json")
	require.NoError(t, err)
	ss, err := ParseSummary("leaf1", data)
	require.NoError(t, err)
	byPeer := map[string]Session{}
	for _, s := range ss {
		byPeer[s.Peer] = s
	}
	require.Contains(t, byPeer, "eth1")
	assert.True(t, byPeer["eth1"].Established())
	assert.Equal(t, "edge1", byPeer["eth1"].Hostname)
	assert.Equal(t, uint32(65000), byPeer["eth1"].RemoteAS)
	require.Contains(t, byPeer, "2001:db8::11")
	assert.False(t, byPeer["2001:db8::11"].Established())

	none, err := ParseSummary("x", []byte("{}"))
	require.NoError(t, err)
	assert.Empty(t, none)
	_, err = ParseSummary("x", []byte("% Unknown command"))
	assert.Error(t, err)
}

func TestParseRoutesFromRealFRR(t *testing.T) {
	data, err := os.ReadFile("testdata/leaf1-routes.json")
	require.NoError(t, err)
	rs, err := ParseRoutes("leaf1", data)
	require.NoError(t, err)
	prefixes := map[string]Route{}
	for _, r := range rs {
		prefixes[r.Prefix] = r
	}
	assert.Contains(t, prefixes, "2001:db8:0:e02::/64", "the world subnet, learned from edge1")
	assert.Contains(t, prefixes, "2001:db8:0:f00::1/128")
	assert.NotContains(t, prefixes, "2001:db8:0:f00::2/128", "its own loopback is not learned")
	assert.NotEmpty(t, prefixes["2001:db8:0:e02::/64"].NextHops)
}

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
