package verdict

import (
	"encoding/binary"
	"net/netip"
)

// BGPPort is BGP's TCP port.
const BGPPort = 179

// BGPUpdate is what the analyzers read of the BGP UPDATE messages one TCP segment
// carries: the IPv6 unicast prefixes announced (MP_REACH_NLRI) and withdrawn
// (MP_UNREACH_NLRI), the lab's underlay being IPv6-only. A message split across
// segments is not reassembled (the lab's updates are a few dozen bytes); sessions
// with ADD-PATH are not read (the lab negotiates none).
type BGPUpdate struct {
	Announced []netip.Prefix
	Withdrawn []netip.Prefix
}

// Empty reports whether the segment carried no IPv6 prefix either way.
func (u *BGPUpdate) Empty() bool { return len(u.Announced) == 0 && len(u.Withdrawn) == 0 }

const (
	bgpHeaderLen   = 19
	bgpTypeUpdate  = 2
	attrMPReach    = 14
	attrMPUnreach  = 15
	afiIPv6        = 2
	safiUnicast    = 1
	attrExtLenFlag = 0x10
)

// ParseBGP reads the BGP messages of a TCP payload into u (reusing its slices); it
// stops at the first byte that is not a whole message.
func ParseBGP(b []byte, u *BGPUpdate) {
	u.Announced, u.Withdrawn = u.Announced[:0], u.Withdrawn[:0]
	for len(b) >= bgpHeaderLen {
		for i := range 16 {
			if b[i] != 0xff {
				return
			}
		}
		n := int(binary.BigEndian.Uint16(b[16:18]))
		if n < bgpHeaderLen || n > len(b) {
			return
		}
		if b[18] == bgpTypeUpdate {
			parseUpdate(b[bgpHeaderLen:n], u)
		}
		b = b[n:]
	}
}

// parseUpdate reads an UPDATE's body: withdrawn IPv4 routes (skipped), then the path
// attributes, of which the multiprotocol ones for IPv6 unicast.
func parseUpdate(b []byte, u *BGPUpdate) {
	if len(b) < 2 {
		return
	}
	wl := int(binary.BigEndian.Uint16(b))
	if 2+wl+2 > len(b) {
		return
	}
	b = b[2+wl:]
	al := int(binary.BigEndian.Uint16(b))
	if 2+al > len(b) {
		return
	}
	attrs := b[2 : 2+al]
	for len(attrs) >= 3 {
		flags, typ := attrs[0], attrs[1]
		hl, l := 3, int(attrs[2])
		if flags&attrExtLenFlag != 0 {
			if len(attrs) < 4 {
				return
			}
			hl, l = 4, int(binary.BigEndian.Uint16(attrs[2:4]))
		}
		if hl+l > len(attrs) {
			return
		}
		v := attrs[hl : hl+l]
		switch typ {
		case attrMPReach:
			// AFI, SAFI, next hop length and next hop, a reserved byte, then NLRI.
			if len(v) >= 4 && binary.BigEndian.Uint16(v) == afiIPv6 && v[2] == safiUnicast {
				if nh := int(v[3]); 4+nh+1 <= len(v) {
					u.Announced = appendNLRI(u.Announced, v[4+nh+1:])
				}
			}
		case attrMPUnreach:
			if len(v) >= 3 && binary.BigEndian.Uint16(v) == afiIPv6 && v[2] == safiUnicast {
				u.Withdrawn = appendNLRI(u.Withdrawn, v[3:])
			}
		}
		attrs = attrs[hl+l:]
	}
}

// appendNLRI appends the IPv6 prefixes of an NLRI field: a length in bits, then as
// many bytes as it needs.
func appendNLRI(out []netip.Prefix, b []byte) []netip.Prefix {
	for len(b) >= 1 {
		bits := int(b[0])
		n := (bits + 7) / 8
		if bits > 128 || 1+n > len(b) {
			return out
		}
		var a [16]byte
		copy(a[:], b[1:1+n])
		if p, err := netip.AddrFrom16(a).Prefix(bits); err == nil {
			out = append(out, p)
		}
		b = b[1+n:]
	}
	return out
}

// AppendBGPUpdate encodes one UPDATE announcing and withdrawing IPv6 unicast prefixes
// (next hop nh), for tests and for checking the decoder against known bytes.
func AppendBGPUpdate(b []byte, nh netip.Addr, announced, withdrawn []netip.Prefix) []byte {
	nlri := func(ps []netip.Prefix) []byte {
		var out []byte
		for _, p := range ps {
			a := p.Addr().As16()
			out = append(out, byte(p.Bits()))
			out = append(out, a[:(p.Bits()+7)/8]...)
		}
		return out
	}
	var attrs []byte
	attr := func(typ byte, v []byte) {
		attrs = append(attrs, 0x80|attrExtLenFlag, typ)
		attrs = binary.BigEndian.AppendUint16(attrs, uint16(len(v)))
		attrs = append(attrs, v...)
	}
	if len(withdrawn) > 0 {
		attr(attrMPUnreach, append([]byte{0, afiIPv6, safiUnicast}, nlri(withdrawn)...))
	}
	if len(announced) > 0 {
		a := nh.As16()
		v := append([]byte{0, afiIPv6, safiUnicast, 16}, a[:]...)
		v = append(v, 0)
		attr(attrMPReach, append(v, nlri(announced)...))
	}
	body := binary.BigEndian.AppendUint16(nil, 0) // no withdrawn IPv4 routes
	body = binary.BigEndian.AppendUint16(body, uint16(len(attrs)))
	body = append(body, attrs...)
	for range 16 {
		b = append(b, 0xff)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(bgpHeaderLen+len(body)))
	b = append(b, bgpTypeUpdate)
	return append(b, body...)
}
