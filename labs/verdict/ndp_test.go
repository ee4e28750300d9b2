package verdict

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNDPAnswers(t *testing.T) {
	router, vip := netip.MustParseAddr("2001:db8:0:3::1"), netip.MustParseAddr("2001:db8:0:3::1:1")
	other := netip.MustParseAddr("2001:db8:0:3::1:2")
	a, b := MAC{2, 0, 0, 0, 0, 0xa}, MAC{2, 0, 0, 0, 0, 0xb}
	r := MAC{2, 0, 0, 0, 0, 0x1}
	t0 := time.Unix(1000, 0)
	frames := []Frame{
		{t0, NDPFrame(r, router, vip, false, false)},
		{t0.Add(3 * time.Millisecond), NDPFrame(a, netip.MustParseAddr("fe80::a"), vip, true, true)},
		{t0.Add(5 * time.Millisecond), NDPFrame(b, netip.MustParseAddr("fe80::b"), other, true, true)}, // another address
		{t0.Add(700 * time.Millisecond), NDPFrame(b, netip.MustParseAddr("fe80::b"), vip, true, true)},
		{t0.Add(900 * time.Millisecond), NDPFrame(a, netip.MustParseAddr("fe80::a"), vip, true, false)},
		{t0.Add(time.Second), UDPFrame(router, vip, 1, 2, nil)},
	}
	var buf bytes.Buffer
	require.NoError(t, WritePcap(&buf, frames))
	var pkts []Packet
	require.NoError(t, Each(bytes.NewReader(buf.Bytes()), "t", func(p *Packet) { pkts = append(pkts, p.Clone()) }))

	ns := FirstSolicitation(pkts, vip)
	require.NotNil(t, ns)
	assert.Equal(t, r, ns.NDP.LinkAddr, "a solicitation's source link-layer option")
	assert.Equal(t, r, ns.SrcMAC)

	got := NDPAnswers(pkts, vip)
	require.Len(t, got, 2, "two link-layer addresses answered for the VIP")
	assert.Equal(t, a, got[0].MAC)
	assert.Equal(t, 2, got[0].Count)
	assert.Equal(t, 1, got[0].Unsolicited)
	assert.Equal(t, b, got[1].MAC)
	assert.Equal(t, 1, got[1].Count)
	assert.True(t, got[1].First.NDP.Solicited)
	assert.Equal(t, 3*time.Millisecond, NDPDelay(pkts, vip))

	assert.Len(t, NDPAnswers(pkts, other), 1)
	assert.Nil(t, FirstSolicitation(pkts, other))
	assert.Equal(t, time.Duration(-1), NDPDelay(pkts, other), "no solicitation: no delay")
	assert.Empty(t, NDPAnswers(pkts, router))
	assert.Nil(t, pkts[5].NDP, "a UDP packet is no NDP")
}

func TestParseNDPShortOrOddOptions(t *testing.T) {
	var n NDP
	assert.False(t, parseNDP(136, make([]byte, 19), &n), "shorter than flags and target")
	b := make([]byte, 20+8+8)
	b[20], b[21] = 14, 1 // an option of another type
	b[28], b[29] = 2, 0  // length 0: malformed, ends the walk
	b[30] = 0xff
	require.True(t, parseNDP(136, b, &n))
	assert.Equal(t, MAC{}, n.LinkAddr)
}
