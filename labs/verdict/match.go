package verdict

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// Match selects the packets a check looks at.
type Match struct {
	Proto   string     // "", udp, tcp, icmp6
	Port    uint16     // either port (0: any)
	DstPort uint16     // destination port (0: any)
	Src     netip.Addr // (zero: any)
	Dst     netip.Addr
}

// ParseProto checks a protocol name.
func ParseProto(s string) (string, error) {
	switch strings.ToLower(s) {
	case "", "any":
		return "", nil
	case "udp", "tcp", "icmp6":
		return strings.ToLower(s), nil
	case "icmpv6":
		return "icmp6", nil
	}
	return "", fmt.Errorf("%w: protocol %q (udp, tcp or icmp6)", ErrBadInput, s)
}

// Matches reports whether p is an IPv6 packet the check looks at.
func (m Match) Matches(p *Packet) bool {
	if !p.IPv6 {
		return false
	}
	switch m.Proto {
	case "udp":
		if p.Proto != layers.IPProtocolUDP {
			return false
		}
	case "tcp":
		if p.Proto != layers.IPProtocolTCP {
			return false
		}
	case "icmp6":
		if p.Proto != layers.IPProtocolICMPv6 {
			return false
		}
	}
	if m.Port != 0 && p.SrcPort != m.Port && p.DstPort != m.Port {
		return false
	}
	if m.DstPort != 0 && p.DstPort != m.DstPort {
		return false
	}
	if m.Src.IsValid() && p.Src != m.Src {
		return false
	}
	if m.Dst.IsValid() && p.Dst != m.Dst {
		return false
	}
	return true
}

// Evidence points at one packet.
type Evidence struct {
	File  string    `json:"file"`
	Frame int       `json:"frame"`
	Time  time.Time `json:"time"`
	Src   string    `json:"src"`
	Dst   string    `json:"dst"`
	Proto string    `json:"proto,omitempty"`
	Note  string    `json:"note,omitempty"`
}

func evidence(p *Packet, note string) Evidence {
	e := Evidence{File: p.File, Frame: p.Index, Time: p.Time, Note: note}
	if p.Src.IsValid() {
		e.Src, e.Dst = p.Src.String(), p.Dst.String()
	}
	if p.IPv6 || p.IPv4 {
		e.Proto = p.Proto.String()
	}
	return e
}

// maxEvidence bounds the evidence listed per verdict (counts stay exact).
const maxEvidence = 50
