// Package hubble is the one place v6lab reads Hubble: the arguments of `hubble
// observe` for a window of time, the flows it prints (-o jsonpb, one
// GetFlowsResponse per line, field names as the proto spells them), and where those
// flows and the wire tell different stories about the same probes.
package hubble

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Verdicts and the drop reason v6lab judges (flow.proto's enum names).
const (
	Forwarded    = "FORWARDED"
	Dropped      = "DROPPED"
	PolicyDenied = "POLICY_DENIED"
)

// Socket is the agent's own observer, which the hubble CLI in the agent image reads
// by default (HUBBLE_SERVER, fixtures/images/cilium).
const Socket = "unix:///var/run/cilium/hubble.sock"

// Flow is one Hubble flow: the fields set against the wire.
type Flow struct {
	Time             time.Time
	Node             string
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            string // TCP, UDP, ICMPv6 ("" for another)
	Verdict          string // FORWARDED, DROPPED, ...
	DropReason       string // POLICY_DENIED, ... ("" unless dropped)
	SrcID, DstID     uint32 // security identities
	SrcPod, DstPod   string // namespace/name ("" outside the cluster's pods)
	Point, Direction string // trace observation point, traffic direction
	Reply            bool
	Summary          string
}

// ObserveArgs are the hubble CLI's arguments for every flow to or from any of ips
// between since and until, as JSON.
func ObserveArgs(since, until time.Time, ips ...netip.Addr) []string {
	args := []string{"observe", "--output", "jsonpb"}
	for _, ip := range ips {
		args = append(args, "--ip", ip.String())
	}
	return append(args, "--since", since.UTC().Format(time.RFC3339Nano), "--until", until.UTC().Format(time.RFC3339Nano))
}

type endpoint struct {
	Identity  uint32 `json:"identity"`
	Namespace string `json:"namespace"`
	PodName   string `json:"pod_name"`
}

func (e *endpoint) pod() string {
	if e == nil || e.PodName == "" {
		return ""
	}
	return e.Namespace + "/" + e.PodName
}

func (e *endpoint) id() uint32 {
	if e == nil {
		return 0
	}
	return e.Identity
}

type ports struct {
	SourcePort      uint16 `json:"source_port"`
	DestinationPort uint16 `json:"destination_port"`
}

type response struct {
	Flow *struct {
		Time    time.Time `json:"time"`
		Verdict string    `json:"verdict"`
		IP      *struct {
			Source      string `json:"source"`
			Destination string `json:"destination"`
		} `json:"IP"`
		L4 *struct {
			TCP    *ports    `json:"TCP"`
			UDP    *ports    `json:"UDP"`
			ICMPv6 *struct{} `json:"ICMPv6"`
		} `json:"l4"`
		Source      *endpoint `json:"source"`
		Destination *endpoint `json:"destination"`
		NodeName    string    `json:"node_name"`
		Point       string    `json:"trace_observation_point"`
		Direction   string    `json:"traffic_direction"`
		DropReason  string    `json:"drop_reason_desc"`
		IsReply     *bool     `json:"is_reply"`
		Summary     string    `json:"Summary"`
	} `json:"flow"`
}

// Parse reads `hubble observe -o jsonpb`: one response per line; lines without a flow
// (node status, lost events) are skipped. A line that is not JSON is an error naming it.
func Parse(out string) ([]Flow, error) {
	var flows []Flow
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r response
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return flows, fmt.Errorf("hubble output line %d: %w", n, err)
		}
		f := r.Flow
		if f == nil || f.IP == nil {
			continue
		}
		fl := Flow{Time: f.Time, Node: f.NodeName, Verdict: f.Verdict, Point: f.Point, Direction: f.Direction,
			SrcID: f.Source.id(), DstID: f.Destination.id(), SrcPod: f.Source.pod(), DstPod: f.Destination.pod(), Summary: f.Summary}
		fl.Src, _ = netip.ParseAddr(f.IP.Source)
		fl.Dst, _ = netip.ParseAddr(f.IP.Destination)
		if f.Verdict == Dropped {
			fl.DropReason = f.DropReason
		}
		if f.IsReply != nil {
			fl.Reply = *f.IsReply
		}
		if l4 := f.L4; l4 != nil {
			switch {
			case l4.TCP != nil:
				fl.Proto, fl.SrcPort, fl.DstPort = "TCP", l4.TCP.SourcePort, l4.TCP.DestinationPort
			case l4.UDP != nil:
				fl.Proto, fl.SrcPort, fl.DstPort = "UDP", l4.UDP.SourcePort, l4.UDP.DestinationPort
			case l4.ICMPv6 != nil:
				fl.Proto = "ICMPv6"
			}
		}
		flows = append(flows, fl)
	}
	return flows, sc.Err()
}

// Probe is what the wire showed of one probe: the packets the sender sent (on its own
// link) and how many reached the far end, in the probe's window.
type Probe struct {
	What       string
	Src        netip.Addr
	Dst        netip.AddrPort
	Proto      string // TCP or UDP
	Start, End time.Time
	Sent       int // seen leaving the sender
	Delivered  int // seen arriving at the far end
	// Backends are where a load balancer may send Dst (a Service's backends, at
	// their target ports): Hubble reports a flow to a VIP as the datapath saw it
	// past the translation, to the backend.
	Backends []netip.AddrPort
	// Replies: Hubble's flows of the replies (from Dst or a backend, to Src) count
	// as its account too. On a DSR path a backend's node may report only the reply
	// of an exchange (1.20.2: the request delivered from another node has no
	// to-endpoint flow), and a forwarded reply says the request arrived.
	Replies bool
}

// reply says whether a flow is a reply of the probe's exchange: to its source, from
// its destination or a backend.
func (p Probe) reply(f Flow) bool {
	if !p.Replies || f.Dst != p.Src {
		return false
	}
	from := netip.AddrPortFrom(f.Src, f.SrcPort)
	return from == p.Dst || slices.Contains(p.Backends, from)
}

// to says whether a flow's destination is the probe's, or one of its backends.
func (p Probe) to(f Flow) bool {
	if f.Dst == p.Dst.Addr() && f.DstPort == p.Dst.Port() {
		return true
	}
	return slices.Contains(p.Backends, netip.AddrPortFrom(f.Dst, f.DstPort))
}

// Disagreement is one probe of which Hubble and the wire tell different stories.
type Disagreement struct {
	What   string
	Wire   string // what the capture showed
	Hubble string // what Hubble said
}

// Account is what Hubble said of one probe: its flows' verdicts and drop reasons.
type Account struct {
	Flows       []Flow
	Forwarded   int
	Dropped     int
	DropReasons []string
}

// For is Hubble's account of a probe: the flows from the probe's source to its
// destination address and port (or a backend's), in its window (replies aside,
// unless the probe counts them: Replies).
func For(p Probe, flows []Flow) Account {
	var a Account
	for _, f := range flows {
		request := !f.Reply && f.Src == p.Src && p.to(f)
		if !(request || p.reply(f)) || f.Proto != p.Proto || f.Time.Before(p.Start) || f.Time.After(p.End) {
			continue
		}
		a.Flows = append(a.Flows, f)
		switch f.Verdict {
		case Forwarded:
			a.Forwarded++
		case Dropped:
			a.Dropped++
			if !slices.Contains(a.DropReasons, f.DropReason) {
				a.DropReasons = append(a.DropReasons, f.DropReason)
			}
		}
	}
	return a
}

// String says it for people: "FORWARDED ×3, DROPPED ×1 (POLICY_DENIED)".
func (a Account) String() string {
	if len(a.Flows) == 0 {
		return "no flow"
	}
	var parts []string
	if a.Forwarded > 0 {
		parts = append(parts, fmt.Sprintf("FORWARDED ×%d", a.Forwarded))
	}
	if a.Dropped > 0 {
		parts = append(parts, fmt.Sprintf("DROPPED ×%d (%s)", a.Dropped, strings.Join(a.DropReasons, ", ")))
	}
	if len(parts) == 0 {
		return fmt.Sprintf("%d flows, none forwarded or dropped", len(a.Flows))
	}
	return strings.Join(parts, ", ")
}

// Compare sets Hubble's account of each probe against the wire's. They disagree when
//   - the wire delivered the probe and Hubble dropped it, or saw no flow of it;
//   - the wire lost the probe (sent, never delivered) and Hubble dropped nothing: it
//     called the probe FORWARDED, or saw no flow;
//   - the wire never saw the probe leave and Hubble forwarded it.
func Compare(probes []Probe, flows []Flow) []Disagreement {
	var out []Disagreement
	for _, p := range probes {
		a := For(p, flows)
		wire := fmt.Sprintf("%d sent, %d delivered", p.Sent, p.Delivered)
		switch {
		case p.Sent == 0 && a.Forwarded > 0:
			out = append(out, Disagreement{p.What, "never seen leaving " + p.Src.String(), a.String()})
		case p.Sent == 0:
		case p.Delivered > 0 && (a.Dropped > 0 || len(a.Flows) == 0):
			out = append(out, Disagreement{p.What, wire, a.String()})
		case p.Delivered == 0 && a.Dropped == 0:
			out = append(out, Disagreement{p.What, wire, a.String()})
		}
	}
	return out
}
