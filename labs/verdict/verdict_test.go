package verdict

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	probewire "v6lab.dev/v6lab/fixtures/probe/wire"
)

var (
	pod    = netip.MustParseAddr("2001:db8:0:a01::1:5")
	node   = netip.MustParseAddr("2001:db8:0:1::11")
	world  = netip.MustParseAddr("2001:db8:0:e02::2")
	vip    = netip.MustParseAddr("2001:db8:0:101::7")
	client = netip.MustParseAddr("2001:db8:0:e01::2")
	t0     = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
)

// stream makes n probe requests src->dst every interval, skipping the seqs in drop.
func stream(src, dst netip.Addr, n int, interval time.Duration, drop func(seq int) bool) []Frame {
	var out []Frame
	for i := 0; i < n; i++ {
		if drop != nil && drop(i) {
			continue
		}
		at := t0.Add(time.Duration(i) * interval)
		out = append(out, Frame{Time: at, Data: UDPFrame(src, dst, 40000, 9000, probewire.AppendRequest(nil, uint64(i), at))})
	}
	return out
}

func decode(t *testing.T, frames []Frame, ng bool) []Packet {
	t.Helper()
	var b bytes.Buffer
	if ng {
		require.NoError(t, WritePcapng(&b, "eth1", frames))
	} else {
		require.NoError(t, WritePcap(&b, frames))
	}
	var out []Packet
	require.NoError(t, Each(bytes.NewReader(b.Bytes()), "test.pcap", func(p *Packet) { out = append(out, p.Clone()) }))
	return out
}

func TestDecodeBothFormats(t *testing.T) {
	for _, ng := range []bool{false, true} {
		pk := decode(t, stream(pod, world, 3, 10*time.Millisecond, nil), ng)
		require.Len(t, pk, 3)
		assert.Equal(t, pod, pk[1].Src)
		assert.Equal(t, uint16(9000), pk[1].DstPort)
		require.NotNil(t, pk[1].Probe)
		assert.Equal(t, uint64(1), pk[1].Probe.Seq)
		assert.Equal(t, 2, pk[1].Index)
		assert.Equal(t, t0.Add(10*time.Millisecond), pk[1].Time.UTC(), "nanosecond timestamps survive (ng=%v)", ng)
	}
}

func TestSourcePassesAndFailsNamingTheTranslatedSource(t *testing.T) {
	good := decode(t, stream(pod, world, 5, time.Millisecond, nil), false)
	v := Source(good, Match{Proto: "udp", DstPort: 9000}, []netip.Prefix{netip.MustParsePrefix("2001:db8:0:a01::/64")})
	assert.True(t, v.Pass, v.Reason)
	assert.Equal(t, 5, v.Matched)

	masq := decode(t, append(stream(pod, world, 3, time.Millisecond, nil), stream(node, world, 2, time.Millisecond, nil)...), false)
	v = Source(masq, Match{Proto: "udp"}, []netip.Prefix{netip.MustParsePrefix("2001:db8:0:a01::/64")})
	assert.False(t, v.Pass)
	assert.Equal(t, 2, v.Offenders)
	require.NotEmpty(t, v.Evidence)
	assert.Equal(t, node.String(), v.Evidence[0].Src)
	assert.Equal(t, 4, v.Evidence[0].Frame)

	v = Source(good, Match{Proto: "tcp"}, []netip.Prefix{netip.MustParsePrefix("::/0")})
	assert.False(t, v.Pass, "no matching packet is never a pass")
}

func TestIPv4(t *testing.T) {
	v6 := stream(pod, world, 2, time.Millisecond, nil)
	assert.True(t, IPv4(decode(t, v6, false)).Pass)
	with4 := append(v6, Frame{Time: t0, Data: IPv4Frame(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"))})
	v := IPv4(decode(t, with4, false))
	assert.False(t, v.Pass)
	assert.Equal(t, 1, v.IPv4)
	assert.Equal(t, 3, v.Evidence[0].Frame)
	assert.False(t, IPv4(nil).Pass, "an empty capture proves nothing")
}

func TestOutageFindsTheInjectedWindow(t *testing.T) {
	// 10 ms probes; seqs 100..149 lost: a 510 ms gap between seq 99 and seq 150.
	pk := decode(t, stream(client, world, 300, 10*time.Millisecond, func(s int) bool { return s >= 100 && s < 150 }), true)
	v := Outage(pk, Match{Proto: "udp"}, 0, 0)
	require.Len(t, v.Windows, 1)
	w := v.Windows[0]
	assert.InDelta(t, 510, w.DurationMs, 0.01)
	assert.Equal(t, uint64(100), w.LostSeqFrom)
	assert.Equal(t, uint64(149), w.LostSeqTo)
	assert.Equal(t, 50, v.Lost)
	assert.InDelta(t, 10, v.MedianIntervalMs, 0.01)
	assert.InDelta(t, 510, v.MaxGapMs, 0.01)
	assert.True(t, v.Pass)

	v = Outage(pk, Match{Proto: "udp"}, 0, 200*time.Millisecond)
	assert.False(t, v.Pass, "a 510 ms window exceeds a 200 ms limit")
	v = Outage(pk, Match{Proto: "udp"}, 0, time.Second)
	assert.True(t, v.Pass)

	clean := decode(t, stream(client, world, 50, 10*time.Millisecond, nil), false)
	v = Outage(clean, Match{Proto: "udp"}, 0, 0)
	assert.Empty(t, v.Windows)
	assert.Zero(t, v.Lost)
	assert.False(t, Outage(nil, Match{}, 0, 0).Pass)
}

func TestOutageCountsDuplicatesAndReordering(t *testing.T) {
	f := stream(client, world, 5, 10*time.Millisecond, nil)
	f = append(f, f[2]) // a duplicate, captured later
	f[3], f[4] = f[4], f[3]
	f[3].Time, f[4].Time = f[4].Time, f[3].Time
	v := Outage(decode(t, f, false), Match{}, 0, 0)
	assert.Equal(t, 1, v.Duplicates)
	assert.Equal(t, 1, v.Reordered)
}

func TestReturnPath(t *testing.T) {
	replies := func(n int) []Packet {
		var fr []Frame
		for i := 0; i < n; i++ {
			fr = append(fr, Frame{Time: t0, Data: UDPFrame(vip, client, 80, 40000, nil)})
		}
		return decode(t, fr, false)
	}
	files := map[string][]Packet{"nodeB.pcapng": replies(4), "nodeA.pcapng": decode(t, stream(client, vip, 4, time.Millisecond, nil), false)}
	v := ReturnPath(files, vip, client, Match{}, "nodeB.pcapng")
	assert.True(t, v.Pass, v.Reason)
	assert.Equal(t, 4, v.Replies["nodeB.pcapng"])
	assert.Equal(t, 0, v.Replies["nodeA.pcapng"])

	files["nodeA.pcapng"] = append(files["nodeA.pcapng"], replies(1)...)
	v = ReturnPath(files, vip, client, Match{}, "nodeB.pcapng")
	assert.False(t, v.Pass, "a reply through node A is not DSR")
	var outside []string
	for _, e := range v.Evidence {
		if e.Note == "reply outside the expected path" {
			outside = append(outside, e.File)
		}
	}
	assert.Equal(t, []string{"nodeA.pcapng"}, outside)

	v = ReturnPath(map[string][]Packet{"x": nil}, vip, client, Match{}, "x")
	assert.False(t, v.Pass)

	// Requests and replies all through node B: nothing entered elsewhere, nothing proven.
	onlyB := append(decode(t, stream(client, vip, 4, time.Millisecond, nil), false), replies(4)...)
	v = ReturnPath(map[string][]Packet{"nodeB.pcapng": onlyB, "nodeA.pcapng": nil}, vip, client, Match{}, "nodeB.pcapng")
	assert.False(t, v.Pass, v.Reason)
	assert.Equal(t, 4, v.Entries["nodeB.pcapng"])
	assert.Contains(t, v.Reason, "entered through another")
}

func TestPairs(t *testing.T) {
	var fr []Frame
	for i := 0; i < 4; i++ {
		at := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		req := probewire.AppendRequest(nil, uint64(i), at)
		fr = append(fr, Frame{Time: at, Data: UDPFrame(client, world, 40000, 9000, req)})
		if i != 2 {
			rep := probewire.AppendReply(nil, req, netip.AddrPortFrom(client, 40000))
			fr = append(fr, Frame{Time: at.Add(time.Millisecond), Data: UDPFrame(world, client, 9000, 40000, rep)})
		}
	}
	v := Pairs(decode(t, fr, false), Match{Proto: "udp"})
	assert.False(t, v.Pass)
	assert.Equal(t, 4, v.Requests)
	assert.Equal(t, 3, v.Answered)
	assert.Equal(t, []uint64{2}, v.Unanswered)
	assert.Equal(t, 3, v.Observed[client.String()])
	assert.InDelta(t, 1, v.RTTMedMs, 0.01)
}

func TestReadFileErrors(t *testing.T) {
	_, err := ReadFile(filepath.Join(t.TempDir(), "missing.pcap"))
	assert.ErrorIs(t, err, ErrBadInput)
	p := filepath.Join(t.TempDir(), "junk.pcap")
	require.NoError(t, os.WriteFile(p, []byte("this is not a capture"), 0o644))
	_, err = ReadFile(p)
	assert.ErrorIs(t, err, ErrBadInput)
}

func FuzzDecode(f *testing.F) {
	f.Add(UDPFrame(pod, world, 1, 2, probewire.AppendRequest(nil, 1, t0)))
	f.Add(IPv4Frame(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")))
	f.Add([]byte{})
	f.Add(fragment(185, false)) // the analyzer holes' crafted frames, as regression seeds
	f.Add(fragment(0, true))
	v4 := IPv4Frame(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"))
	f.Add(append(append(append([]byte{}, v4[:12]...), 0x81, 0x00, 0x00, 0x0a), v4[12:]...))
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Packet
		NewDecoder().Decode(data, &p)
		_ = probewire.Parse(data)
	})
}

// FuzzEach feeds arbitrary bytes to the capture reader (pcap and pcapng): it returns
// an error or packets, never panics, and never runs away.
func FuzzEach(f *testing.F) {
	var pcap, ng bytes.Buffer
	frames := stream(pod, world, 3, time.Millisecond, nil)
	_ = WritePcap(&pcap, frames)
	_ = WritePcapng(&ng, "eth1", frames)
	f.Add(pcap.Bytes())
	f.Add(ng.Bytes())
	f.Add([]byte{0x0a, 0x0d, 0x0d, 0x0a})
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		_ = Each(bytes.NewReader(data), "fuzz", func(*Packet) { n++ })
		if n > len(data) {
			t.Fatalf("%d packets from %d bytes", n, len(data))
		}
	})
}

func TestDecodeTooBigAndLengths(t *testing.T) {
	client, vip, node := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:1::5"), netip.MustParseAddr("2001:db8:2::3")
	big := UDPFrame(client, vip, 40000, 9000, make([]byte, 9452))
	d := NewDecoder()
	var p Packet
	d.Decode(big, &p)
	assert.Equal(t, 9500, p.IPLength)
	assert.Equal(t, TooBig{}, p.TooBig)

	ptb := TooBigFrame(node, 9476, big)
	p = Packet{}
	d.Decode(ptb, &p)
	assert.Equal(t, layers.IPProtocolICMPv6, p.Proto)
	assert.Equal(t, uint8(layers.ICMPv6TypePacketTooBig), p.ICMPv6.Type())
	assert.Equal(t, TooBig{MTU: 9476, Dst: vip}, p.TooBig)
	assert.Equal(t, client, p.Dst)
	assert.Equal(t, 1280, p.IPLength)
}

func TestDecodeBGPUpdates(t *testing.T) {
	router, nodeAddr := netip.MustParseAddrPort("[2001:db8:0:1::11]:179"), netip.MustParseAddrPort("[2001:db8:0:1::12]:40123")
	vip := netip.MustParsePrefix("2001:db8:0:101::7/128")
	pool := netip.MustParsePrefix("2001:db8:0:a01:1::/80")
	// Two messages in one segment: a withdrawal, then an announcement.
	payload := AppendBGPUpdate(nil, nodeAddr.Addr(), nil, []netip.Prefix{vip})
	payload = AppendBGPUpdate(payload, nodeAddr.Addr(), []netip.Prefix{pool, vip}, nil)
	var p Packet
	d := NewDecoder()
	d.Decode(TCPFrame(nodeAddr, router, TCPAck, 1, payload), &p)
	require.NotNil(t, p.BGP)
	kept := p.Clone()
	assert.Equal(t, []netip.Prefix{vip}, kept.BGP.Withdrawn)
	assert.Equal(t, []netip.Prefix{pool, vip}, kept.BGP.Announced)

	// A keepalive (a header alone) and a truncated update carry no prefix.
	ka := append(bytes.Repeat([]byte{0xff}, 16), 0, 19, 4)
	p = Packet{}
	d.Decode(TCPFrame(nodeAddr, router, TCPAck, 2, ka), &p)
	assert.Nil(t, p.BGP)
	p = Packet{}
	d.Decode(TCPFrame(nodeAddr, router, TCPAck, 3, payload[:30]), &p)
	assert.Nil(t, p.BGP)
	// The packet decoded earlier keeps its prefixes.
	assert.Equal(t, []netip.Prefix{vip}, kept.BGP.Withdrawn)
}
