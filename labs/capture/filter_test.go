package capture

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/bpf"

	"v6lab.dev/v6lab/labs/verdict"
)

// The compiled programs run in x/net/bpf's VM against crafted frames.
func TestFilterPrograms(t *testing.T) {
	a, b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	udp9000 := verdict.UDPFrame(a, b, 40000, 9000, []byte("x"))
	udpBack := verdict.UDPFrame(b, a, 9000, 40000, []byte("x"))
	udpOther := verdict.UDPFrame(a, b, 40000, 53, []byte("x"))
	v4 := verdict.IPv4Frame(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"))

	cases := []struct {
		f      Filter
		accept map[string]bool
	}{
		{Filter{IPv6Only: true}, map[string]bool{"udp9000": true, "udpBack": true, "udpOther": true, "v4": false}},
		{Filter{Proto: "udp"}, map[string]bool{"udp9000": true, "udpOther": true, "v4": false}},
		{Filter{Proto: "tcp"}, map[string]bool{"udp9000": false, "v4": false}},
		{Filter{Proto: "udp", Port: 9000}, map[string]bool{"udp9000": true, "udpBack": true, "udpOther": false, "v4": false}},
	}
	frames := map[string][]byte{"udp9000": udp9000, "udpBack": udpBack, "udpOther": udpOther, "v4": v4}
	for _, c := range cases {
		raw, err := c.f.Program()
		require.NoError(t, err)
		insts, ok := bpf.Disassemble(raw)
		require.True(t, ok)
		vm, err := bpf.NewVM(insts)
		require.NoError(t, err)
		for name, want := range c.accept {
			n, err := vm.Run(frames[name])
			require.NoError(t, err)
			assert.Equal(t, want, n > 0, "%+v on %s", c.f, name)
		}
	}
	none, err := Filter{}.Program()
	require.NoError(t, err)
	assert.Nil(t, none, "no filter keeps everything")
	_, err = Filter{Port: 1}.Program()
	assert.Error(t, err)
	_, err = Filter{Proto: "sctp"}.Program()
	assert.Error(t, err)
}
