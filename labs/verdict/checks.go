package verdict

import (
	"net/netip"
	"sort"
	"time"
)

// SourceVerdict says whether every matching packet's source lies in an expected prefix.
type SourceVerdict struct {
	Check     string         `json:"check"`
	Pass      bool           `json:"pass"`
	Reason    string         `json:"reason"`
	Expect    []string       `json:"expect"`
	Matched   int            `json:"matched"`
	Sources   map[string]int `json:"sources"`
	Offenders int            `json:"offenders"`
	Evidence  []Evidence     `json:"evidence"` // the first offenders (or the first match, when all pass)
}

// Source checks that every packet matching m comes from inside one of expect. It is the
// masquerade and GUA-pool check: a translated source shows up as an offender.
func Source(pkts []Packet, m Match, expect []netip.Prefix) SourceVerdict {
	v := SourceVerdict{Check: "source", Sources: map[string]int{}}
	for _, e := range expect {
		v.Expect = append(v.Expect, e.String())
	}
	for i := range pkts {
		p := &pkts[i]
		if !m.Matches(p) {
			continue
		}
		v.Matched++
		v.Sources[p.Src.String()]++
		if inAny(p.Src, expect) {
			if v.Matched == 1 {
				v.Evidence = append(v.Evidence, evidence(p, "first match"))
			}
			continue
		}
		v.Offenders++
		if v.Offenders <= maxEvidence {
			v.Evidence = append(v.Evidence, evidence(p, "source outside the expected prefixes"))
		}
	}
	switch {
	case v.Matched == 0:
		v.Reason = "no matching packet: the capture proves nothing"
	case v.Offenders > 0:
		v.Reason = "packets with sources outside the expected prefixes (translated or wrong pool)"
		if len(v.Evidence) > 0 && v.Evidence[0].Note == "first match" {
			v.Evidence = v.Evidence[1:]
		}
	default:
		v.Pass = true
		v.Reason = "every matching packet's source is inside the expected prefixes"
	}
	return v
}

func inAny(a netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// IPv4Verdict says whether a data link carried any IPv4.
type IPv4Verdict struct {
	Check    string     `json:"check"`
	Pass     bool       `json:"pass"`
	Reason   string     `json:"reason"`
	Frames   int        `json:"frames"`
	IPv4     int        `json:"ipv4Frames"`
	Evidence []Evidence `json:"evidence"`
}

// IPv4 passes iff the capture holds frames and none of them is IPv4 or ARP.
func IPv4(pkts []Packet) IPv4Verdict {
	v := IPv4Verdict{Check: "ipv4", Frames: len(pkts)}
	for i := range pkts {
		if pkts[i].IPv4 {
			v.IPv4++
			if v.IPv4 <= maxEvidence {
				v.Evidence = append(v.Evidence, evidence(&pkts[i], "IPv4 or ARP frame"))
			}
		}
	}
	switch {
	case v.Frames == 0:
		v.Reason = "no frame at all: the capture proves nothing"
	case v.IPv4 > 0:
		v.Reason = "IPv4 frames on a data link"
	default:
		v.Pass = true
		v.Reason = "no IPv4 or ARP frame"
	}
	return v
}

// ReasonRepliesElsewhere is ReturnPath's reason when replies left through another
// file than the expected one (the DSR violation itself).
const ReasonRepliesElsewhere = "replies appeared outside the expected file"

// ReturnPathVerdict counts, per capture file, the replies from a VIP to a client.
type ReturnPathVerdict struct {
	Check   string         `json:"check"`
	Pass    bool           `json:"pass"`
	Reason  string         `json:"reason"`
	VIP     string         `json:"vip"`
	Client  string         `json:"client"`
	Replies map[string]int `json:"replies"`
	// Entries counts, per file, the requests from the client to the VIP: where they
	// entered the cluster.
	Entries    map[string]int `json:"entries"`
	ExpectFile string         `json:"expectFile,omitempty"`
	Evidence   []Evidence     `json:"evidence"`
}

// ReturnPath checks where the replies (source VIP, destination client) were seen. With
// expectFile, it passes iff every reply is in that file and none in the others; without,
// iff replies were seen at all. This is what a DSR check needs: replies leave the
// backend's node, never the node the request entered through. With expectFile it also
// requires requests to have entered through another file: replies leaving the node the
// requests came in through prove nothing about DSR.
func ReturnPath(files map[string][]Packet, vip, client netip.Addr, m Match, expectFile string) ReturnPathVerdict {
	v := ReturnPathVerdict{Check: "return-path", VIP: vip.String(), Client: client.String(),
		Replies: map[string]int{}, Entries: map[string]int{}, ExpectFile: expectFile}
	req := m
	req.Src, req.Dst = client, vip
	m.Src, m.Dst = vip, client
	total, elsewhere, enteredElsewhere := 0, 0, 0
	names := make([]string, 0, len(files))
	for f := range files {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, f := range names {
		v.Replies[f] = 0
		v.Entries[f] = 0
		for i := range files[f] {
			p := &files[f][i]
			if req.Matches(p) {
				v.Entries[f]++
				if f != expectFile {
					enteredElsewhere++
				}
				continue
			}
			if !m.Matches(p) {
				continue
			}
			v.Replies[f]++
			total++
			if expectFile != "" && f != expectFile {
				elsewhere++
				if elsewhere <= maxEvidence {
					e := evidence(p, "reply outside the expected path")
					e.File = f
					v.Evidence = append(v.Evidence, e)
				}
			} else if v.Replies[f] == 1 {
				e := evidence(p, "first reply in this file")
				e.File = f
				v.Evidence = append(v.Evidence, e)
			}
		}
	}
	switch {
	case total == 0:
		v.Reason = "no reply from the VIP to the client in any file: the capture proves nothing"
	case expectFile == "":
		v.Pass = true
		v.Reason = "replies seen; no expected file given"
	case elsewhere > 0:
		v.Reason = ReasonRepliesElsewhere
	case v.Replies[expectFile] == 0:
		v.Reason = "no reply in the expected file"
	case enteredElsewhere == 0:
		v.Reason = "no request entered through another file: the path of the replies proves nothing"
	default:
		v.Pass = true
		v.Reason = "every reply is in the expected file"
	}
	return v
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// PairsVerdict pairs probe requests with replies.
type PairsVerdict struct {
	Check      string         `json:"check"`
	Pass       bool           `json:"pass"`
	Reason     string         `json:"reason"`
	Requests   int            `json:"requests"`
	Answered   int            `json:"answered"`
	Unanswered []uint64       `json:"unanswered"`
	Responders map[string]int `json:"responders"`
	Observed   map[string]int `json:"observedSources"` // what the responder saw as our source
	RTTMinMs   float64        `json:"rtt_min_ms"`
	RTTMedMs   float64        `json:"rtt_median_ms"`
	RTTMaxMs   float64        `json:"rtt_max_ms"`
}

// Pairs matches probe requests to replies by sequence number: every request answered,
// by whom, with which RTT, and which source the responder observed.
func Pairs(pkts []Packet, m Match) PairsVerdict {
	v := PairsVerdict{Check: "pairs", Responders: map[string]int{}, Observed: map[string]int{}, Unanswered: []uint64{}}
	sent := map[uint64]time.Time{}
	var order []uint64
	var rtts []time.Duration
	for i := range pkts {
		p := &pkts[i]
		if !m.Matches(p) || p.Probe == nil {
			continue
		}
		if !p.Probe.Reply {
			if _, dup := sent[p.Probe.Seq]; !dup {
				sent[p.Probe.Seq] = p.Time
				order = append(order, p.Probe.Seq)
			}
			continue
		}
		t0, ok := sent[p.Probe.Seq]
		if !ok {
			continue
		}
		delete(sent, p.Probe.Seq)
		v.Answered++
		v.Responders[p.Src.String()]++
		v.Observed[p.Probe.Observed.Addr().String()]++
		rtts = append(rtts, p.Time.Sub(t0))
	}
	v.Requests = v.Answered + len(sent)
	for _, s := range order {
		if _, open := sent[s]; open {
			v.Unanswered = append(v.Unanswered, s)
		}
	}
	if len(rtts) > 0 {
		sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
		v.RTTMinMs, v.RTTMedMs, v.RTTMaxMs = ms(rtts[0]), ms(rtts[len(rtts)/2]), ms(rtts[len(rtts)-1])
	}
	switch {
	case v.Requests == 0:
		v.Reason = "no probe request: the capture proves nothing"
	case len(v.Unanswered) > 0:
		v.Reason = "unanswered requests"
	default:
		v.Pass = true
		v.Reason = "every request answered"
	}
	return v
}
