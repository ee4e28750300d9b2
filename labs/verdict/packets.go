// Package verdict holds v6lab's analyzers: pure functions over decoded packets that turn
// a capture into a verdict (pass or fail) with its evidence (packet numbers, times,
// addresses) and figures. Conformance is judged from packets; a check that saw no
// matching packet at all fails, because it proved nothing.
package verdict

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	probewire "v6lab.dev/v6lab/fixtures/probe/wire"
)

// Packet is what the analyzers need of one captured frame.
type Packet struct {
	File   string
	Index  int // 1-based frame number in its file, as Wireshark counts
	Time   time.Time
	Length int // bytes of the frame as captured
	// IPLength is the IP packet's length from its own header (IPv6: 40 + its payload
	// length), whatever the capture kept.
	IPLength int
	IPv4     bool // an IPv4 (or ARP) frame
	IPv6     bool
	Src      netip.Addr
	Dst      netip.Addr
	Proto    layers.IPProtocol // transport protocol, after any IPv6 extension headers
	ExtHdr   bool              // IPv6 extension headers were present (e.g. DSR's destination option)
	SrcPort  uint16
	DstPort  uint16
	ICMPv6   layers.ICMPv6TypeCode
	// TooBig is an ICMPv6 Packet Too Big's MTU and the destination of the packet it
	// quotes (zero when this is none).
	TooBig TooBig
	// TCP: the segment's flags (TCPSyn, ...), sequence number and payload length.
	TCPFlags uint8
	Seq      uint32
	Payload  int
	Probe    *probewire.Probe // a v6lab probe payload, if this is one
	// BGP is the IPv6 prefixes the BGP UPDATEs of this TCP segment announce and
	// withdraw (nil: none).
	BGP *BGPUpdate
	// Fragment: a non-first IPv6 fragment (Proto is the fragmented protocol; no
	// ports, no probe).
	Fragment bool
	// SrcMAC is the Ethernet source of the frame.
	SrcMAC MAC
	// NDP is a Neighbor Solicitation's or Advertisement's content (nil: neither).
	NDP *NDP
	// Inner is the frame a VXLAN packet carries (UDP port 8472, Linux's and Cilium's,
	// or 4789, IANA's), decoded: in tunnel mode the pods' own packets.
	Inner *Packet
}

// MAC is an Ethernet address (comparable, allocation-free).
type MAC [6]byte

func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// NDP is what a Neighbor Solicitation or Advertisement says (RFC 4861 4.3, 4.4): the
// address it asks or tells about, and the link-layer address in its option (the
// source's in a solicitation, the target's in an advertisement; zero without one).
type NDP struct {
	Target    netip.Addr
	LinkAddr  MAC
	Solicited bool // an advertisement answering a solicitation (else unsolicited)
	Override  bool
}

// TooBig is what an ICMPv6 Packet Too Big says: the MTU of the next hop, and to where
// the packet that did not fit was going.
type TooBig struct {
	MTU uint32
	Dst netip.Addr
}

// Clone is a copy of p that owns its Probe and Inner (a decoded Packet points into its
// decoder, which the next frame overwrites).
func (p *Packet) Clone() Packet {
	c := *p
	if p.Probe != nil {
		pr := *p.Probe
		c.Probe = &pr
	}
	if p.Inner != nil {
		in := p.Inner.Clone()
		c.Inner = &in
	}
	if p.NDP != nil {
		n := *p.NDP
		c.NDP = &n
	}
	if p.BGP != nil {
		c.BGP = &BGPUpdate{Announced: append([]netip.Prefix(nil), p.BGP.Announced...), Withdrawn: append([]netip.Prefix(nil), p.BGP.Withdrawn...)}
	}
	return c
}

// Sent is the packet as its sender made it: the frame inside a VXLAN tunnel, else the
// packet itself.
func (p *Packet) Sent() *Packet {
	if p.Inner != nil {
		return p.Inner
	}
	return p
}

// vxlanPorts are the UDP ports of VXLAN.
func isVXLAN(port uint16) bool { return port == 8472 || port == 4789 }

// Decoder decodes frames with one reused DecodingLayerParser (no per-packet allocation
// of layers).
type Decoder struct {
	eth     layers.Ethernet
	ip4     layers.IPv4
	ip6     layers.IPv6
	ext     layers.IPv6ExtensionSkipper
	udp     layers.UDP
	tcp     layers.TCP
	icmp6   layers.ICMPv6
	payload gopacket.Payload
	parser  *gopacket.DecodingLayerParser
	decoded []gopacket.LayerType
	// innerDec decodes VXLAN payloads (inner: this decoder is one; it does not recurse).
	innerDec *Decoder
	inner    bool
	// probe and innerPkt are the storage a decoded Packet's Probe and Inner point to:
	// decoding allocates nothing, and a Packet kept past the next Decode is Cloned.
	probe    probewire.Probe
	innerPkt Packet
	bgp      BGPUpdate
	ndp      NDP
}

// NewDecoder makes a decoder for Ethernet frames.
func NewDecoder() *Decoder {
	d := &Decoder{}
	d.parser = gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet,
		&d.eth, &d.ip4, &d.ip6, &d.ext, &d.udp, &d.tcp, &d.icmp6, &d.payload)
	d.parser.IgnoreUnsupported = true
	return d
}

// etherType reads a frame's EtherType behind any VLAN tags (802.1Q, 802.1ad), from the
// bytes themselves, and where its payload starts: a frame whose IPv4 header is
// malformed, or that is tagged, is still IPv4 on the wire.
func etherType(data []byte) (layers.EthernetType, int) {
	off := 12
	for off+2 <= len(data) {
		t := layers.EthernetType(binary.BigEndian.Uint16(data[off:]))
		if t != layers.EthernetTypeDot1Q && t != layers.EthernetTypeQinQ {
			return t, off + 2
		}
		off += 4
	}
	return 0, len(data)
}

// nonFirstFragment reports whether an IPv6 packet (at data[off:]) is a fragment other
// than the first: its transport header is in the first fragment, and what follows the
// fragment header here is payload, not a port number.
func nonFirstFragment(data []byte, off int) bool {
	if off+40 > len(data) {
		return false
	}
	next, at := data[off+6], off+40
	for {
		switch layers.IPProtocol(next) {
		case layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Routing, layers.IPProtocolIPv6Destination:
			if at+2 > len(data) {
				return false
			}
			next, at = data[at], at+8*(int(data[at+1])+1)
		case layers.IPProtocolIPv6Fragment:
			if at+4 > len(data) {
				return false
			}
			return binary.BigEndian.Uint16(data[at+2:])>>3 != 0
		default:
			return false
		}
	}
}

// Decode fills p from one frame. Frames it cannot fully decode keep what was decoded.
// A frame is IPv4 by its EtherType (IPv4 or ARP, behind VLAN tags too), whether or not
// its IPv4 header decodes; a non-first IPv6 fragment carries no ports.
func (d *Decoder) Decode(data []byte, p *Packet) {
	p.Length = len(data)
	et, payload := etherType(data)
	if et == layers.EthernetTypeIPv4 || et == layers.EthernetTypeARP {
		p.IPv4 = true
	}
	_ = d.parser.DecodeLayers(data, &d.decoded) // truncated frames: keep the layers decoded so far
	for _, lt := range d.decoded {
		if p.Fragment && (lt == layers.LayerTypeUDP || lt == layers.LayerTypeTCP || lt == layers.LayerTypeICMPv6) {
			continue // bytes of a later fragment, not a transport header
		}
		switch lt {
		case layers.LayerTypeEthernet:
			copy(p.SrcMAC[:], d.eth.SrcMAC)
		case layers.LayerTypeIPv4:
			p.IPv4 = true
			p.Src, _ = netip.AddrFromSlice(d.ip4.SrcIP.To4())
			p.Dst, _ = netip.AddrFromSlice(d.ip4.DstIP.To4())
			p.Proto = d.ip4.Protocol
			p.IPLength = int(d.ip4.Length)
		case layers.LayerTypeIPv6:
			p.IPv6 = true
			p.Src, _ = netip.AddrFromSlice(d.ip6.SrcIP)
			p.Dst, _ = netip.AddrFromSlice(d.ip6.DstIP)
			p.Proto = d.ip6.NextHeader
			p.IPLength = 40 + int(d.ip6.Length)
			p.Fragment = et == layers.EthernetTypeIPv6 && nonFirstFragment(data, payload)
		case layers.LayerTypeIPv6Destination, layers.LayerTypeIPv6HopByHop, layers.LayerTypeIPv6Routing, layers.LayerTypeIPv6Fragment:
			p.ExtHdr = true
			p.Proto = d.ext.NextHeader
		case layers.LayerTypeUDP:
			p.Proto = layers.IPProtocolUDP
			p.SrcPort, p.DstPort = uint16(d.udp.SrcPort), uint16(d.udp.DstPort)
			if probewire.ParseInto(&d.probe, d.udp.Payload) {
				p.Probe = &d.probe // the decoder's own: Clone to keep it
			}
			if isVXLAN(p.DstPort) && len(d.udp.Payload) > 8+14 && d.udp.Payload[0]&0x08 != 0 && !d.inner {
				// The VXLAN header (8 bytes, I flag set) then the tunnelled frame; one
				// level only.
				if d.innerDec == nil {
					d.innerDec = NewDecoder()
					d.innerDec.inner = true
				}
				d.innerPkt = Packet{File: p.File, Index: p.Index, Time: p.Time}
				d.innerDec.Decode(d.udp.Payload[8:], &d.innerPkt)
				p.Inner = &d.innerPkt
			}
		case layers.LayerTypeTCP:
			p.Proto = layers.IPProtocolTCP
			p.SrcPort, p.DstPort = uint16(d.tcp.SrcPort), uint16(d.tcp.DstPort)
			p.Seq, p.Payload = d.tcp.Seq, len(d.tcp.Payload)
			if (p.SrcPort == BGPPort || p.DstPort == BGPPort) && len(d.tcp.Payload) >= bgpHeaderLen {
				if ParseBGP(d.tcp.Payload, &d.bgp); !d.bgp.Empty() {
					p.BGP = &d.bgp // the decoder's own: Clone to keep it
				}
			}
			for _, f := range [...]struct {
				on   bool
				flag uint8
			}{{d.tcp.FIN, TCPFin}, {d.tcp.SYN, TCPSyn}, {d.tcp.RST, TCPRst}, {d.tcp.ACK, TCPAck}} {
				if f.on {
					p.TCPFlags |= f.flag
				}
			}
		case layers.LayerTypeICMPv6:
			p.Proto = layers.IPProtocolICMPv6
			p.ICMPv6 = d.icmp6.TypeCode
			// After type, code and checksum: the MTU, then the packet quoted.
			if b := d.icmp6.Payload; d.icmp6.TypeCode.Type() == layers.ICMPv6TypePacketTooBig && len(b) >= 4 {
				p.TooBig.MTU = binary.BigEndian.Uint32(b)
				if len(b) >= 4+40 {
					p.TooBig.Dst = netip.AddrFrom16([16]byte(b[4+24 : 4+40]))
				}
			}
			if t := d.icmp6.TypeCode.Type(); t == layers.ICMPv6TypeNeighborSolicitation || t == layers.ICMPv6TypeNeighborAdvertisement {
				if parseNDP(t, d.icmp6.Payload, &d.ndp) {
					p.NDP = &d.ndp // the decoder's own: Clone to keep it
				}
			}
		}
	}
}

// parseNDP reads a solicitation's or advertisement's body (after type, code and
// checksum: flags or reserved, the target, then options of 8-byte units).
func parseNDP(t uint8, b []byte, n *NDP) bool {
	if len(b) < 20 {
		return false
	}
	*n = NDP{Target: netip.AddrFrom16([16]byte(b[4:20]))}
	want := uint8(1) // source link-layer address
	if t == layers.ICMPv6TypeNeighborAdvertisement {
		n.Solicited, n.Override = b[0]&0x40 != 0, b[0]&0x20 != 0
		want = 2 // target link-layer address
	}
	for o := b[20:]; len(o) >= 8 && o[1] != 0 && len(o) >= 8*int(o[1]); o = o[8*int(o[1]):] {
		if o[0] == want {
			copy(n.LinkAddr[:], o[2:8])
		}
	}
	return true
}

// ErrBadInput marks input the analyzers cannot read (exit status 2 in the CLI).
var ErrBadInput = errors.New("bad input")

// ReadFile reads a pcap or pcapng file of Ethernet frames.
func ReadFile(path string) ([]Packet, error) {
	var pkts []Packet
	err := EachFile(path, func(p *Packet) { pkts = append(pkts, p.Clone()) })
	return pkts, err
}

// EachFile is Each over one file.
func EachFile(path string, fn func(*Packet)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	defer f.Close()
	return Each(f, path, fn)
}

type packetSource interface {
	// ZeroCopyReadPacketData: the frame is valid until the next call; Decode copies what
	// it keeps.
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// Each decodes every frame of a pcap or pcapng stream and calls fn with it; fn must
// Clone what it keeps (the Packet, its Probe and Inner are reused).
func Each(r io.ReadSeeker, name string, fn func(*Packet)) error {
	var magic [4]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil {
		return fmt.Errorf("%w: %s: not a capture file: %v", ErrBadInput, name, err)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return err
	}
	var src packetSource
	var link layers.LinkType
	if binary.LittleEndian.Uint32(magic[:]) == 0x0a0d0d0a {
		// A frame on an interface of another link type than the first is an error (by
		// default pcapgo skips it silently).
		opts := pcapgo.DefaultNgReaderOptions
		opts.ErrorOnMismatchingLinkType = true
		ng, err := pcapgo.NewNgReader(r, opts)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBadInput, name, err)
		}
		src, link = ng, ng.LinkType()
	} else {
		pr, err := pcapgo.NewReader(r)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBadInput, name, err)
		}
		src, link = pr, pr.LinkType()
	}
	if link != layers.LinkTypeEthernet {
		return fmt.Errorf("%w: %s: link type %s (v6lab reads Ethernet captures)", ErrBadInput, name, link)
	}
	d := NewDecoder()
	var p Packet
	for i := 1; ; i++ {
		data, ci, err := src.ZeroCopyReadPacketData()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %s: frame %d: %v", ErrBadInput, name, i, err)
		}
		p = Packet{File: name, Index: i, Time: ci.Timestamp}
		d.Decode(data, &p)
		fn(&p)
	}
}
