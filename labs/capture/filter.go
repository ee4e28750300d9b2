package capture

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// Filter selects frames in the kernel (a classic BPF program on the socket), so a busy
// link does not flood the capture with frames no check looks at.
type Filter struct {
	// IPv6Only keeps only IPv6 frames. Leave it off to see IPv4 and ARP too (the IPv4
	// leak check needs every frame).
	IPv6Only bool
	// Proto keeps one transport protocol of IPv6 (udp, tcp, icmp6); it implies IPv6Only.
	// IPv6 extension headers are not walked: use no Proto to keep such packets.
	Proto string
	// Port keeps UDP/TCP packets with this source or destination port (needs Proto).
	Port uint16
}

const (
	etherTypeOffset = 12
	ipv6NextHeader  = 14 + 6
	l4Ports         = 14 + 40
	snapLen         = 1 << 18
)

// Program compiles the filter (nil: keep everything).
func (f Filter) Program() ([]bpf.RawInstruction, error) {
	if !f.IPv6Only && f.Proto == "" {
		if f.Port != 0 {
			return nil, fmt.Errorf("capture filter: a port needs a protocol (udp or tcp)")
		}
		return nil, nil
	}
	var proto uint32
	switch f.Proto {
	case "":
	case "udp":
		proto = 17
	case "tcp":
		proto = 6
	case "icmp6":
		proto = 58
	default:
		return nil, fmt.Errorf("capture filter: unknown protocol %q (udp, tcp, icmp6)", f.Proto)
	}
	if f.Port != 0 && proto != 17 && proto != 6 {
		return nil, fmt.Errorf("capture filter: a port needs udp or tcp")
	}
	// The program, with "fail" as the last instruction and "accept" before it; skips
	// are computed from the end.
	var prog []bpf.Instruction
	prog = append(prog, bpf.LoadAbsolute{Off: etherTypeOffset, Size: 2})
	prog = append(prog, bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0x86dd, SkipTrue: 0xff}) // -> fail
	if proto != 0 {
		prog = append(prog, bpf.LoadAbsolute{Off: ipv6NextHeader, Size: 1})
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: proto, SkipTrue: 0xff})
	}
	if f.Port != 0 {
		prog = append(prog, bpf.LoadAbsolute{Off: l4Ports, Size: 2})
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(f.Port), SkipTrue: 0xfe}) // -> accept
		prog = append(prog, bpf.LoadAbsolute{Off: l4Ports + 2, Size: 2})
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(f.Port), SkipTrue: 0xff})
	}
	prog = append(prog, bpf.RetConstant{Val: snapLen}, bpf.RetConstant{Val: 0})
	accept, fail := len(prog)-2, len(prog)-1
	for i, ins := range prog {
		if j, ok := ins.(bpf.JumpIf); ok {
			target := fail
			if j.SkipTrue == 0xfe {
				target = accept
			}
			j.SkipTrue = uint8(target - i - 1)
			prog[i] = j
		}
	}
	return bpf.Assemble(prog)
}
