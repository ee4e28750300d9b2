package verdict

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testdata holds two captures of the same 50-probe stream (client -> world, 10 ms) from
// a real v6lab lab: one written by tcpdump (classic pcap, microseconds) inside the
// client, one by v6lab capture (pcapng, nanoseconds) at the world host.
func TestRealCaptures(t *testing.T) {
	clientNet := netip.MustParsePrefix("2001:db8:0:e01::/64")
	for _, f := range []string{"testdata/client-eth1-tcpdump.pcap", "testdata/world-eth1-v6lab.pcapng"} {
		t.Run(f, func(t *testing.T) {
			pkts, err := ReadFile(f)
			require.NoError(t, err)
			req := Match{Proto: "udp", DstPort: 9000}
			assert.True(t, Source(pkts, req, []netip.Prefix{clientNet}).Pass)
			assert.False(t, Source(pkts, req, []netip.Prefix{netip.MustParsePrefix("2001:db8:0:a00::/56")}).Pass)
			assert.True(t, IPv4(pkts).Pass)
			p := Pairs(pkts, Match{Proto: "udp"})
			assert.True(t, p.Pass, "%+v", p)
			assert.Equal(t, 50, p.Requests)
			assert.Equal(t, map[string]int{"2001:db8:0:e01::2": 50}, p.Observed)
			o := Outage(pkts, req, 0, 0)
			assert.Equal(t, 50, o.Packets)
			assert.Empty(t, o.Windows)
			assert.InDelta(t, 10, o.MedianIntervalMs, 1)
		})
	}
}
