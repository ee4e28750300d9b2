package verdict

import (
	"bytes"
	"encoding/binary"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	probewire "v6lab.dev/v6lab/fixtures/probe/wire"
)

// requestReply is a 10 ms probe stream client -> vip with its replies vip -> client
// (1 ms later), as a capture at the client holds both; reply(seq) says whether that
// probe's reply is on the wire.
func requestReply(n int, reply func(seq int) bool) []Frame {
	var out []Frame
	for i := 0; i < n; i++ {
		at := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		req := probewire.AppendRequest(nil, uint64(i), at)
		out = append(out, Frame{Time: at, Data: UDPFrame(client, vip, 40000, 9000, req)})
		if reply == nil || reply(i) {
			out = append(out, Frame{Time: at.Add(time.Millisecond),
				Data: UDPFrame(vip, client, 9000, 40000, probewire.AppendReply(nil, req, netip.AddrPortFrom(client, 40000)))})
		}
	}
	return out
}

var udpStream = Match{Proto: "udp"}

// With both directions captured, the outage is a gap in the replies: requests going on
// meanwhile do not hide it (they did: every gap of the mixed stream was 1 or 9 ms).
func TestOutageMeasuresTheRepliesOfARequestReplyStream(t *testing.T) {
	pk := decode(t, requestReply(300, func(s int) bool { return s < 100 || s >= 150 }), true)
	v, err := OutageOf(Slice(pk), udpStream, OutageOptions{MaxLost: -1})
	require.NoError(t, err)
	assert.Equal(t, "replies", v.Measured)
	require.Len(t, v.Windows, 1, "%+v", v)
	assert.InDelta(t, 510, v.Windows[0].DurationMs, 0.01)
	assert.Equal(t, 300, v.Requests)
	assert.Equal(t, 250, v.Replies)
	assert.Equal(t, 50, v.Lost)
	assert.False(t, v.Unrecovered)
}

// Requests after the last reply are an outage that never ended: it fails, with an
// unrecovered window, whatever the limits.
func TestOutageUnrecoveredStreamFails(t *testing.T) {
	pk := decode(t, requestReply(300, func(s int) bool { return s < 200 }), false)
	v, err := OutageOf(Slice(pk), udpStream, OutageOptions{MaxLost: -1})
	require.NoError(t, err)
	assert.False(t, v.Pass, v.Reason)
	assert.True(t, v.Unrecovered)
	require.NotEmpty(t, v.Windows)
	w := v.Windows[len(v.Windows)-1]
	assert.True(t, w.Unrecovered)
	assert.InDelta(t, 999, w.DurationMs, 0.01, "from the last reply (seq 199, at +1 ms) to the last request (seq 299)")
	assert.Contains(t, v.Reason, "did not recover")

	// No reply at all: only the client's address tells requests from a one-way stream.
	none := decode(t, requestReply(50, func(int) bool { return false }), false)
	v, err = OutageOf(Slice(none), udpStream, OutageOptions{MaxLost: -1, Client: client})
	require.NoError(t, err)
	assert.False(t, v.Pass)
	assert.True(t, v.Unrecovered, "no reply at all")
}

// Every other reply lost: no gap is longer than three median intervals, but half the
// probes are gone: the loss budget fails it.
func TestOutageSpreadLossFailsTheBudget(t *testing.T) {
	pk := decode(t, requestReply(200, func(s int) bool { return s%2 == 0 }), false)
	v, err := OutageOf(Slice(pk), udpStream, OutageOptions{MaxOutage: time.Second, MaxLost: 0.01})
	require.NoError(t, err)
	assert.Empty(t, v.Windows)
	assert.Equal(t, 100, v.Lost)
	assert.InDelta(t, 0.5, v.LostFraction, 0.001)
	assert.False(t, v.Pass, v.Reason)
	assert.Contains(t, v.Reason, "budget")
}

// Sequence numbers that wrap count as consecutive: no loss, never a negative one.
func TestOutageSequenceWrap(t *testing.T) {
	var frames []Frame
	for i, seq := range []uint64{math.MaxUint64 - 2, math.MaxUint64 - 1, math.MaxUint64, 0, 1, 2} {
		at := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		frames = append(frames, Frame{Time: at, Data: UDPFrame(client, world, 40000, 9000, probewire.AppendRequest(nil, seq, at))})
	}
	v, err := OutageOf(Slice(decode(t, frames, false)), udpStream, OutageOptions{MaxLost: 0})
	require.NoError(t, err)
	assert.Zero(t, v.Lost)
	assert.Zero(t, v.Reordered)
	assert.True(t, v.Pass, v.Reason)
}

// IPv4 is told by its EtherType: behind a VLAN tag, and with a header that does not
// decode, it is IPv4 all the same.
func TestIPv4ByEtherType(t *testing.T) {
	v4 := IPv4Frame(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"))
	tagged := append(append(append([]byte{}, v4[:12]...), 0x81, 0x00, 0x00, 0x0a), v4[12:]...)
	malformed := append(append([]byte{}, v4[:14]...), 0xff, 0xff, 0xff) // EtherType IPv4, garbage header
	arpTagged := append(append([]byte{}, v4[:12]...), 0x81, 0x00, 0x00, 0x0a, 0x08, 0x06, 0, 1)
	for name, frame := range map[string][]byte{"vlan-tagged": tagged, "malformed": malformed, "arp-vlan-tagged": arpTagged} {
		pk := decode(t, []Frame{{Time: t0, Data: frame}}, false)
		require.Len(t, pk, 1)
		v := IPv4(pk)
		assert.False(t, v.Pass, name)
		assert.Equal(t, 1, v.IPv4, name)
	}
}

// fragment builds an IPv6 fragment (offset in 8-byte units) of a UDP datagram whose
// bytes at the start of the fragment look like a UDP header toward port 9000.
func fragment(offset uint16, more bool) []byte {
	udpLike := make([]byte, 8+20)
	binary.BigEndian.PutUint16(udpLike[0:], 40000)
	binary.BigEndian.PutUint16(udpLike[2:], 9000)
	binary.BigEndian.PutUint16(udpLike[4:], uint16(len(udpLike)))
	frame := append([]byte{}, UDPFrame(client, world, 1, 2, nil)[:14+40]...)
	frame[14+6] = byte(layers.IPProtocolIPv6Fragment)
	binary.BigEndian.PutUint16(frame[14+4:], uint16(8+len(udpLike)))
	off := offset << 3
	if more {
		off |= 1
	}
	frag := []byte{byte(layers.IPProtocolUDP), 0, byte(off >> 8), byte(off), 0, 0, 0, 7}
	return append(append(frame, frag...), udpLike...)
}

func TestNonFirstFragmentIsNotUDP(t *testing.T) {
	pk := decode(t, []Frame{{Time: t0, Data: fragment(0, true)}, {Time: t0, Data: fragment(185, false)}}, false)
	require.Len(t, pk, 2)
	assert.False(t, pk[0].Fragment)
	assert.Equal(t, uint16(9000), pk[0].DstPort, "the first fragment carries the UDP header")
	assert.True(t, pk[1].Fragment)
	assert.Zero(t, pk[1].DstPort, "a later fragment's bytes are not ports")
	assert.Equal(t, layers.IPProtocolUDP, pk[1].Proto)
	assert.False(t, Match{Proto: "udp", DstPort: 9000}.Matches(&pk[1]))
}

// A pcapng frame on an interface of another link type is an error, not skipped.
func TestPcapngFrameOfAnotherLinkTypeIsAnError(t *testing.T) {
	var b bytes.Buffer
	ng, err := pcapgo.NewNgWriterInterface(&b, pcapgo.NgInterface{Name: "eth1", LinkType: layers.LinkTypeEthernet, SnapLength: 65535},
		pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "test"}})
	require.NoError(t, err)
	raw, err := ng.AddInterface(pcapgo.NgInterface{Name: "tun0", LinkType: layers.LinkTypeRaw, SnapLength: 65535})
	require.NoError(t, err)
	good := UDPFrame(client, world, 1, 2, nil)
	require.NoError(t, ng.WritePacket(gopacket.CaptureInfo{Timestamp: t0, CaptureLength: len(good), Length: len(good)}, good))
	ip := good[14:]
	require.NoError(t, ng.WritePacket(gopacket.CaptureInfo{Timestamp: t0, CaptureLength: len(ip), Length: len(ip), InterfaceIndex: raw}, ip))
	require.NoError(t, ng.Flush())
	n := 0
	err = Each(bytes.NewReader(b.Bytes()), "mixed.pcapng", func(*Packet) { n++ })
	require.ErrorIs(t, err, ErrBadInput)
	assert.Contains(t, err.Error(), "frame 2")
	assert.Equal(t, 1, n)
}

// A VXLAN packet (tunnel mode) carries the pods' own frame: it is decoded as Inner, and
// Sent is the pod's packet.
func TestVXLANInnerFrame(t *testing.T) {
	inner := UDPFrame(pod, world, 40000, 9000, probewire.AppendRequest(nil, 3, t0))
	vx := append([]byte{0x08, 0, 0, 0, 0, 0, 0x01, 0}, inner...)
	outer := UDPFrame(node, netip.MustParseAddr("2001:db8:0:1::22"), 51000, 8472, vx)
	pk := decode(t, []Frame{{Time: t0, Data: outer}}, false)
	require.Len(t, pk, 1)
	require.NotNil(t, pk[0].Inner)
	assert.Equal(t, node, pk[0].Src)
	assert.Equal(t, pod, pk[0].Sent().Src)
	assert.Equal(t, world, pk[0].Sent().Dst)
	assert.Equal(t, uint16(9000), pk[0].Sent().DstPort)
	require.NotNil(t, pk[0].Sent().Probe)
	assert.Equal(t, uint64(3), pk[0].Sent().Probe.Seq)
	plain := decode(t, []Frame{{Time: t0, Data: inner}}, false)
	assert.Same(t, &plain[0], plain[0].Sent())
}
