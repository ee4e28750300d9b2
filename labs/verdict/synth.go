package verdict

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// UDPFrame builds an Ethernet/IPv6/UDP frame, for tests and benchmarks (and for
// checking the analyzers against frames whose content is known exactly).
func UDPFrame(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	return ipv6Frame(src, dst, layers.IPProtocolUDP, udp, payload)
}

// TCPFrame builds an Ethernet/IPv6/TCP segment with the given flags (TCPSyn, ...),
// sequence number and payload.
func TCPFrame(src, dst netip.AddrPort, flags uint8, seq uint32, payload []byte) []byte {
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: seq, Window: 65535,
		FIN: flags&TCPFin != 0, SYN: flags&TCPSyn != 0, RST: flags&TCPRst != 0, ACK: flags&TCPAck != 0}
	return ipv6Frame(src.Addr(), dst.Addr(), layers.IPProtocolTCP, tcp, payload)
}

// TooBigFrame builds the ICMPv6 Packet Too Big that from sends to the source of the
// frame (an IPv6 one) that did not fit into mtu, quoting as much of it as fits 1280.
func TooBigFrame(from netip.Addr, mtu uint32, frame []byte) []byte {
	quoted := frame[14:]
	if len(quoted) > 1280-40-8 {
		quoted = quoted[:1280-40-8]
	}
	to := netip.AddrFrom16([16]byte(quoted[8:24]))
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypePacketTooBig, 0)}
	body := append(binary.BigEndian.AppendUint32(nil, mtu), quoted...)
	return ipv6Frame(from, to, layers.IPProtocolICMPv6, icmp, body)
}

// transport is a UDP or TCP layer, whose checksum covers the IPv6 pseudo-header.
type transport interface {
	gopacket.SerializableLayer
	SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
}

// ipv6Frame serializes Ethernet/IPv6/l4/payload with lengths and checksums computed.
func ipv6Frame(src, dst netip.Addr, proto layers.IPProtocol, l4 transport, payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
		EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, NextHeader: proto, HopLimit: 64, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	_ = l4.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, l4, gopacket.Payload(payload)); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// IPv4Frame builds an Ethernet/IPv4/UDP frame.
func IPv4Frame(src, dst netip.Addr) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
		EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	udp := &layers.UDP{SrcPort: 1, DstPort: 2}
	_ = udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// Frame is a frame with its capture time.
type Frame struct {
	Time time.Time
	Data []byte
}

// WritePcap writes frames as a classic pcap (nanosecond) file.
func WritePcap(w io.Writer, frames []Frame) error {
	pw := pcapgo.NewWriterNanos(w)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return err
	}
	for _, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: f.Time, CaptureLength: len(f.Data), Length: len(f.Data)}
		if err := pw.WritePacket(ci, f.Data); err != nil {
			return err
		}
	}
	return nil
}

// WritePcapng writes frames as a pcapng file with one Ethernet interface.
func WritePcapng(w io.Writer, iface string, frames []Frame) error {
	ng, err := pcapgo.NewNgWriterInterface(w, pcapgo.NgInterface{Name: iface, LinkType: layers.LinkTypeEthernet,
		SnapLength: 65535, TimestampResolution: 9}, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "v6lab"}})
	if err != nil {
		return err
	}
	for _, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: f.Time, CaptureLength: len(f.Data), Length: len(f.Data)}
		if err := ng.WritePacket(ci, f.Data); err != nil {
			return err
		}
	}
	return ng.Flush()
}

// NDPFrame builds a Neighbor Solicitation (advert false: from src to target's
// solicited-node group, with a source link-layer option) or Advertisement (advert true:
// to all nodes, with a target link-layer option; solicited sets the S flag) sent by mac.
func NDPFrame(mac MAC, src, target netip.Addr, advert, solicited bool) []byte {
	t, dst, opt := uint8(layers.ICMPv6TypeNeighborSolicitation), solicitedNode(target), byte(1)
	body := make([]byte, 4, 4+16+8)
	if advert {
		t, dst, opt = layers.ICMPv6TypeNeighborAdvertisement, netip.MustParseAddr("ff02::1"), 2
		body[0] = 0x20 // override
		if solicited {
			body[0] |= 0x40
		}
	}
	body = append(body, target.AsSlice()...)
	body = append(append(body, opt, 1), mac[:]...)
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(t, 0)}
	f := ipv6Frame(src, dst, layers.IPProtocolICMPv6, icmp, body)
	copy(f[6:12], mac[:])
	return f
}

// solicitedNode is an address's solicited-node multicast group (RFC 4291 2.7.1).
func solicitedNode(a netip.Addr) netip.Addr {
	b := a.As16()
	g := netip.MustParseAddr("ff02::1:ff00:0").As16()
	copy(g[13:], b[13:])
	return netip.AddrFrom16(g)
}
