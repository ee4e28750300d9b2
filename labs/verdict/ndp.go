package verdict

import (
	"net/netip"
	"sort"
	"time"
)

// NDPAnswer is what one link-layer address advertised for an address on a capture:
// how many Neighbor Advertisements, how many of them unsolicited, and when the first
// came. On a segment where one node owns an address exactly one answers.
type NDPAnswer struct {
	MAC         MAC
	Count       int
	Unsolicited int
	First       Packet
}

// NDPAnswers are the Neighbor Advertisements for target on a capture, by the
// link-layer address they advertise (their target link-layer option; the frame's
// source where they carry none), earliest first.
func NDPAnswers(pkts []Packet, target netip.Addr) []NDPAnswer {
	by := map[MAC]*NDPAnswer{}
	var out []*NDPAnswer
	for i := range pkts {
		p := &pkts[i]
		if p.NDP == nil || p.ICMPv6.Type() != icmpv6NeighborAdvertisement || p.NDP.Target != target {
			continue
		}
		mac := p.NDP.LinkAddr
		if mac == (MAC{}) {
			mac = p.SrcMAC
		}
		a := by[mac]
		if a == nil {
			a = &NDPAnswer{MAC: mac, First: *p}
			by[mac] = a
			out = append(out, a)
		}
		a.Count++
		if !p.NDP.Solicited {
			a.Unsolicited++
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].First.Time.Before(out[j].First.Time) })
	res := make([]NDPAnswer, len(out))
	for i, a := range out {
		res[i] = *a
	}
	return res
}

// FirstSolicitation is the first Neighbor Solicitation for target on a capture (nil:
// none): the router asking who has it.
func FirstSolicitation(pkts []Packet, target netip.Addr) *Packet {
	for i := range pkts {
		p := &pkts[i]
		if p.NDP != nil && p.ICMPv6.Type() == icmpv6NeighborSolicitation && p.NDP.Target == target {
			return p
		}
	}
	return nil
}

// NDPDelay is how long the first answer took after the first solicitation (-1: no
// solicitation, or no answer after it).
func NDPDelay(pkts []Packet, target netip.Addr) time.Duration {
	ns := FirstSolicitation(pkts, target)
	if ns == nil {
		return -1
	}
	for i := range pkts {
		p := &pkts[i]
		if p.NDP != nil && p.ICMPv6.Type() == icmpv6NeighborAdvertisement && p.NDP.Target == target && !p.Time.Before(ns.Time) {
			return p.Time.Sub(ns.Time)
		}
	}
	return -1
}

const (
	icmpv6NeighborSolicitation  = 135
	icmpv6NeighborAdvertisement = 136
)
