package plan

import (
	"encoding/binary"
	"net/netip"
)

// subPrefix returns the index-th sub-prefix of length bits inside p.
// It requires bits > p.Bits() and index < 2^(bits-p.Bits()); callers check.
func subPrefix(p netip.Prefix, bits int, index uint64) netip.Prefix {
	a := p.Masked().Addr().As16()
	hi := binary.BigEndian.Uint64(a[:8])
	lo := binary.BigEndian.Uint64(a[8:])
	shift := 128 - bits
	if shift >= 64 {
		hi += index << (shift - 64)
	} else {
		lo += index << shift
		if shift > 0 && index>>(64-shift) > 0 {
			hi += index >> (64 - shift)
		}
	}
	binary.BigEndian.PutUint64(a[:8], hi)
	binary.BigEndian.PutUint64(a[8:], lo)
	return netip.PrefixFrom(netip.AddrFrom16(a), bits)
}

// hostAddr returns the address at offset inside p (offset counts from the prefix start).
func hostAddr(p netip.Prefix, offset uint64) netip.Addr {
	a := p.Masked().Addr().As16()
	lo := binary.BigEndian.Uint64(a[8:]) + offset
	binary.BigEndian.PutUint64(a[8:], lo)
	return netip.AddrFrom16(a)
}

// routerID builds a 32-bit BGP identifier written as a dotted quad. It is an
// identifier, not an address: IPv6-only speakers have no IPv4 to derive one from.
func routerID(class byte, n int) netip.Addr {
	return netip.AddrFrom4([4]byte{0, class, byte(n >> 8), byte(n)})
}
