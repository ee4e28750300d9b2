package verdict

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tcpConn is a client connection to vip:9001 as a capture at the client holds it: the
// handshake, then a line every 100 ms echoed 1 ms later; lost(i) drops line i's echo
// and has the client retransmit it with the next line; rstAt >= 0 ends it with the
// server's reset after that many lines.
func tcpConn(port uint16, lines int, lost func(i int) bool, rstAt int) []Frame {
	c, s := netip.AddrPortFrom(client, port), netip.AddrPortFrom(vip, 9001)
	at := t0
	out := []Frame{{at, TCPFrame(c, s, TCPSyn, 0, nil)}, {at, TCPFrame(s, c, TCPSyn|TCPAck, 0, nil)}}
	line := []byte("v6lab-tcp 00000000\n")
	var pending []uint32
	for i := 0; i < lines; i++ {
		at = t0.Add(time.Duration(i+1) * 100 * time.Millisecond)
		if i == rstAt {
			out = append(out, Frame{at, TCPFrame(s, c, TCPRst, 0, nil)})
			return out
		}
		seq := uint32(1 + i*len(line))
		for _, p := range pending { // the retransmission of what was not acknowledged
			out = append(out, Frame{at, TCPFrame(c, s, TCPAck, p, line)})
		}
		out = append(out, Frame{at, TCPFrame(c, s, TCPAck, seq, line)})
		if lost != nil && lost(i) {
			pending = append(pending, seq)
			continue
		}
		pending = nil
		out = append(out, Frame{at.Add(time.Millisecond), TCPFrame(s, c, TCPAck, seq, line)})
	}
	return out
}

func decodeFrames(t *testing.T, frames []Frame) []Packet {
	var buf bytes.Buffer
	require.NoError(t, WritePcap(&buf, frames))
	var pkts []Packet
	require.NoError(t, Each(bytes.NewReader(buf.Bytes()), "c.pcap", func(p *Packet) { pkts = append(pkts, p.Clone()) }))
	return pkts
}

func TestTCPStreamsSurvivalStallAndReset(t *testing.T) {
	var frames []Frame
	frames = append(frames, tcpConn(41000, 30, func(i int) bool { return i >= 10 && i < 15 }, -1)...)
	frames = append(frames, tcpConn(41001, 30, nil, 12)...)
	frames = append(frames, Frame{t0, UDPFrame(client, vip, 40000, 9000, nil)}) // not TCP
	streams, err := TCPStreams(Slice(decodeFrames(t, frames)), Match{Port: 9001}, client)
	require.NoError(t, err)
	require.Len(t, streams, 2)
	byPort := map[uint16]TCPStream{}
	for _, s := range streams {
		byPort[s.Client.Port()] = s
		assert.True(t, s.Handshake)
		assert.Equal(t, netip.AddrPortFrom(vip, 9001), s.Server)
	}
	held := byPort[41000]
	fault := t0.Add(1050 * time.Millisecond)
	assert.True(t, held.Survived(fault), "%+v", held)
	assert.Zero(t, held.Resets)
	assert.Equal(t, 1+2+3+4+5, held.Retransmits, "each lost line is sent again with every later one until an echo comes")
	assert.InDelta(t, 600, held.LongestStallMs, 0.01, "echoes of lines 9 and 15")
	assert.Equal(t, t0.Add(1001*time.Millisecond), held.StallStart)

	reset := byPort[41001]
	assert.False(t, reset.Survived(fault))
	assert.Equal(t, 1, reset.Resets)
	assert.Equal(t, "server", reset.ResetBy)
	assert.Equal(t, t0.Add(1300*time.Millisecond), reset.ResetAt)
	assert.Equal(t, 12, reset.ServerData, "it carried data until its reset")

	// A connection still stalled when the capture ends: its stall runs to its last
	// segment (the client's retransmissions).
	stalled, err := TCPStreams(Slice(decodeFrames(t, tcpConn(41002, 30, func(i int) bool { return i >= 20 }, -1))), Match{}, client)
	require.NoError(t, err)
	require.Len(t, stalled, 1)
	assert.InDelta(t, 1000-1, stalled[0].LongestStallMs, 0.01, "from line 19's echo to line 29's send")
	assert.False(t, stalled[0].Survived(t0.Add(2500*time.Millisecond)))
}

func TestTCPStreamsLeavesOtherHostsOut(t *testing.T) {
	other := netip.MustParseAddr("2001:db8:99::1")
	frames := []Frame{{t0, TCPFrame(netip.AddrPortFrom(other, 1), netip.AddrPortFrom(vip, 9001), TCPSyn, 0, nil)}}
	streams, err := TCPStreams(Slice(decodeFrames(t, frames)), Match{}, client)
	require.NoError(t, err)
	assert.Empty(t, streams)
}

// A server that still holds an earlier connection of the same addresses and ports
// answers the client's SYN with an ACK of that connection; the client resets it and
// sends its SYN again (the failover check's CI run: the backend's pod held the client's
// port from a connection to another VIP). That opened the connection, it reset none.
func TestTCPStreamsStaleResetBeforeTheHandshake(t *testing.T) {
	c, s := netip.AddrPortFrom(client, 41003), netip.AddrPortFrom(vip, 9001)
	stale := []Frame{
		{t0, TCPFrame(c, s, TCPSyn, 0, nil)},
		{t0, TCPFrame(s, c, TCPAck, 777, nil)}, // the earlier connection's ACK
		{t0, TCPFrame(c, s, TCPRst, 777, nil)},
	}
	conn := tcpConn(41003, 30, nil, -1)
	for i := range conn {
		conn[i].Time = conn[i].Time.Add(12 * time.Millisecond)
	}
	streams, err := TCPStreams(Slice(decodeFrames(t, append(stale, conn...))), Match{}, client)
	require.NoError(t, err)
	require.Len(t, streams, 1)
	got := streams[0]
	assert.Zero(t, got.Resets, "%+v", got)
	assert.Equal(t, 1, got.StaleResets)
	assert.True(t, got.Survived(t0.Add(time.Second)))

	// The server's RST to the SYN is a reset (refused), and so is the client's once
	// the handshake is done.
	refused := []Frame{{t0, TCPFrame(c, s, TCPSyn, 0, nil)}, {t0, TCPFrame(s, c, TCPRst|TCPAck, 0, nil)}}
	streams, err = TCPStreams(Slice(decodeFrames(t, refused)), Match{}, client)
	require.NoError(t, err)
	require.Len(t, streams, 1)
	assert.Equal(t, 1, streams[0].Resets)
	assert.Equal(t, "server", streams[0].ResetBy)
	late := append(tcpConn(41003, 3, nil, -1), Frame{t0.Add(time.Second), TCPFrame(c, s, TCPRst, 100, nil)})
	streams, err = TCPStreams(Slice(decodeFrames(t, late)), Match{}, client)
	require.NoError(t, err)
	require.Len(t, streams, 1)
	assert.Equal(t, 1, streams[0].Resets)
	assert.Zero(t, streams[0].StaleResets)
	assert.Equal(t, "client", streams[0].ResetBy)
}
