package frr

import (
	"net/netip"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

// testdata/edge1-fib.json is edge1's `show ipv6 route json` in the default lab with
// Cilium (FRR 8.4.4): VIPs over two ECMP next hops, pod slices, connected links.
func TestParseFIBFromRealFRR(t *testing.T) {
	data, err := os.ReadFile("testdata/edge1-fib.json")
	require.NoError(t, err)
	rs, err := ParseFIB("edge1", data)
	require.NoError(t, err)
	byPrefix := map[string]FIBRoute{}
	for _, r := range rs {
		byPrefix[r.Prefix] = r
	}
	vip := byPrefix["2001:db8:0:101::1/128"]
	assert.Equal(t, "bgp", vip.Protocol)
	assert.True(t, vip.Installed)
	assert.Len(t, vip.NextHops, 2, "ECMP over both leaves: %v", vip.NextHops)
	assert.Contains(t, vip.NextHops[0], "%eth")
	assert.Equal(t, "connected", byPrefix["2001:db8:0:e01::/64"].Protocol)
	_, err = ParseFIB("edge1", []byte("% Unknown command"))
	assert.Error(t, err)
}

// testdata/leaf1-bgp-vip.json: leaf1's paths toward a VIP.
func TestParsePathsViaFromRealFRR(t *testing.T) {
	data, err := os.ReadFile("testdata/leaf1-bgp-vip.json")
	require.NoError(t, err)
	via, err := ParsePathsVia("leaf1", data, netip.MustParseAddr("2001:db8::12"))
	require.NoError(t, err)
	assert.True(t, via, "server1 announces the VIP to leaf1")
	via, err = ParsePathsVia("leaf1", data, netip.MustParseAddr("2001:db8:0:1::99"))
	require.NoError(t, err)
	assert.False(t, via)
	via, err = ParsePathsVia("leaf1", []byte("{}"), netip.MustParseAddr("2001:db8::12"))
	require.NoError(t, err)
	assert.False(t, via, "an unknown prefix has no path")
	_, err = ParsePathsVia("leaf1", []byte("vtysh: error"), netip.MustParseAddr("2001:db8::12"))
	assert.Error(t, err, "unreadable is an error, never 'no path'")
}

func TestParseBFDPeers(t *testing.T) {
	data, err := os.ReadFile("testdata/leaf1-bfd-none.json")
	require.NoError(t, err)
	ps, err := ParseBFDPeers("leaf1", data)
	require.NoError(t, err)
	assert.Empty(t, ps)
	ps, err = ParseBFDPeers("leaf1", []byte(`[{"multihop":false,"peer":"2001:db8:0:1::13","local":"2001:db8:0:1::11","vrf":"default","interface":"eth4","id":1,"remote-id":2,"passive-mode":false,"status":"up","uptime":12}]`))
	require.NoError(t, err)
	assert.Equal(t, []BFDPeer{{Router: "leaf1", Peer: "2001:db8:0:1::13", Status: "up"}}, ps)
}
