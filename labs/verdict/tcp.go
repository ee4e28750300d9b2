package verdict

import (
	"net/netip"
	"sort"
	"time"
)

// TCP segment flags, as in Packet.TCPFlags.
const (
	TCPFin uint8 = 1 << 0
	TCPSyn uint8 = 1 << 1
	TCPRst uint8 = 1 << 2
	TCPAck uint8 = 1 << 4
)

// TCPStream is one TCP connection as a capture shows it, named from the client's side.
type TCPStream struct {
	Client     netip.AddrPort `json:"client"`
	Server     netip.AddrPort `json:"server"`
	First      time.Time      `json:"first"`
	Last       time.Time      `json:"last"`
	Handshake  bool           `json:"handshake"` // the client's SYN was captured
	Segments   int            `json:"segments"`
	ClientData int            `json:"client_data"` // segments with payload, each way
	ServerData int            `json:"server_data"`
	// Retransmits counts the client's data segments whose sequence number it had sent
	// before.
	Retransmits int `json:"retransmits"`
	// Resets counts RST segments; the first one's time and sender ("client" or
	// "server").
	Resets  int       `json:"resets"`
	ResetAt time.Time `json:"reset_at,omitzero"`
	ResetBy string    `json:"reset_by,omitempty"`
	// StaleResets counts the client's RSTs before the server's SYN-ACK: the client's
	// answer to an ACK that does not acknowledge its SYN (RFC 9293 3.5.1; RFC 5961's
	// challenge ACK), sent by a server that still holds an earlier connection of the
	// same addresses and ports — with a VIP's DNAT, one the client made to another
	// address the same backend serves. The client then sends its SYN again; no
	// connection of its own was reset, so these are not in Resets.
	StaleResets int  `json:"stale_resets,omitempty"`
	Fin         bool `json:"fin"`
	// LastServerData is the time of the server's last data segment; LongestStall the
	// longest time between two of them, or from the last one to the stream's last
	// segment (a connection still stalled when the capture ended), from StallStart.
	LastServerData time.Time `json:"last_server_data,omitzero"`
	LongestStallMs float64   `json:"longest_stall_ms"`
	StallStart     time.Time `json:"stall_start,omitzero"`
}

// Survived reports whether the connection outlived t: never reset, and data came back
// from the server after t.
func (s TCPStream) Survived(t time.Time) bool {
	return s.Resets == 0 && s.LastServerData.After(t)
}

// TCPStreams groups the TCP segments that m selects by connection, the client being the
// side with address client; segments between other addresses are left out. Memory grows
// with the connections and the client's distinct sequence numbers, not the packets.
// Streams come in order of their first segment.
func TCPStreams(pkts Packets, m Match, client netip.Addr) ([]TCPStream, error) {
	m.Proto = "tcp"
	type state struct {
		s        TCPStream
		seqs     map[uint32]bool
		synAcked bool // the server's SYN-ACK was seen
	}
	conns := map[[2]netip.AddrPort]*state{}
	err := pkts(func(p *Packet) {
		if !m.Matches(p) || p.Fragment {
			return
		}
		src, dst := netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort)
		fromClient := p.Src == client
		if !fromClient && p.Dst != client {
			return
		}
		key := [2]netip.AddrPort{src, dst}
		if !fromClient {
			key = [2]netip.AddrPort{dst, src}
		}
		c := conns[key]
		if c == nil {
			c = &state{s: TCPStream{Client: key[0], Server: key[1], First: p.Time}, seqs: map[uint32]bool{}}
			conns[key] = c
		}
		s := &c.s
		s.Segments++
		s.Last = p.Time
		if fromClient && p.TCPFlags&TCPSyn != 0 && p.TCPFlags&TCPAck == 0 {
			s.Handshake = true
		}
		if !fromClient && p.TCPFlags&(TCPSyn|TCPAck) == TCPSyn|TCPAck {
			c.synAcked = true
		}
		if p.TCPFlags&TCPFin != 0 {
			s.Fin = true
		}
		switch {
		case p.TCPFlags&TCPRst == 0:
		case fromClient && s.Handshake && !c.synAcked:
			s.StaleResets++
		default:
			if s.Resets == 0 {
				s.ResetAt, s.ResetBy = p.Time, "server"
				if fromClient {
					s.ResetBy = "client"
				}
			}
			s.Resets++
		}
		if p.Payload == 0 {
			return
		}
		if fromClient {
			s.ClientData++
			if c.seqs[p.Seq] {
				s.Retransmits++
			}
			c.seqs[p.Seq] = true
			return
		}
		s.ServerData++
		if !s.LastServerData.IsZero() {
			if gap := ms(p.Time.Sub(s.LastServerData)); gap > s.LongestStallMs {
				s.LongestStallMs, s.StallStart = gap, s.LastServerData
			}
		}
		s.LastServerData = p.Time
	})
	if err != nil {
		return nil, err
	}
	out := make([]TCPStream, 0, len(conns))
	for _, c := range conns {
		s := c.s
		if !s.LastServerData.IsZero() {
			if gap := ms(s.Last.Sub(s.LastServerData)); gap > s.LongestStallMs {
				s.LongestStallMs, s.StallStart = gap, s.LastServerData
			}
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].First.Before(out[j].First) })
	return out, nil
}
