package verdict

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// Window is one loss window in a stream.
type Window struct {
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	DurationMs  float64   `json:"duration_ms"`
	LastBefore  int       `json:"lastFrameBefore"`
	FirstAfter  int       `json:"firstFrameAfter"`
	LostSeqFrom uint64    `json:"lostSeqFrom,omitempty"`
	LostSeqTo   uint64    `json:"lostSeqTo,omitempty"`
	// Unrecovered: requests went on after the last reply, and no reply came back
	// before the capture ended. The window runs from the last reply (or the first
	// request) to the last request.
	Unrecovered bool `json:"unrecovered,omitempty"`
}

// OutageVerdict describes the gaps in a stream of matching packets.
type OutageVerdict struct {
	Check            string   `json:"check"`
	Pass             bool     `json:"pass"`
	Reason           string   `json:"reason"`
	Packets          int      `json:"packets"`  // the packets measured (the replies, when both directions were captured)
	Measured         string   `json:"measured"` // "replies" or "stream" (one direction only)
	Requests         int      `json:"requests,omitempty"`
	Replies          int      `json:"replies,omitempty"`
	MedianIntervalMs float64  `json:"median_interval_ms"`
	MinGapMs         float64  `json:"min_gap_ms"`
	MaxGapMs         float64  `json:"max_gap_ms"`
	MaxOutageMs      float64  `json:"max_outage_ms,omitempty"`
	Windows          []Window `json:"windows"`
	WindowsDropped   int      `json:"windowsNotListed,omitempty"` // beyond maxWindows, counted only
	Unrecovered      bool     `json:"unrecovered"`
	Duplicates       int      `json:"duplicates"`
	Reordered        int      `json:"reordered"`
	// Lost is what never came back: requests without a reply (by count, both
	// directions captured), or probe sequence numbers never seen (one direction).
	Lost         int     `json:"lost"`
	LostFraction float64 `json:"lost_fraction"`
	MaxLost      float64 `json:"max_lost_fraction,omitempty"` // the budget (-1: none)
}

// OutageOptions bound an outage verdict.
type OutageOptions struct {
	// MinGap: a gap longer than this is a loss window (0: three times the median
	// inter-arrival time).
	MinGap time.Duration
	// MaxOutage fails any window longer than this (0: windows are only reported).
	MaxOutage time.Duration
	// MaxLost fails a stream that lost more than this fraction of its probes, even
	// when no single window is too long (loss spread over the stream). Negative: not
	// judged.
	MaxLost float64
	// Client, when set, is the address that sends the requests: packets from it are
	// requests and packets to it replies, even when no reply came at all (which flow
	// pairing cannot tell from a one-way stream).
	Client netip.Addr
}

// Packets calls fn with every packet of a capture, in capture order; it may be called
// more than once (the outage analyzer reads its input in passes, holding no packet).
type Packets func(fn func(*Packet)) error

// Slice is Packets over packets in memory.
func Slice(pkts []Packet) Packets {
	return func(fn func(*Packet)) error {
		for i := range pkts {
			fn(&pkts[i])
		}
		return nil
	}
}

// Files is Packets over capture files, read in the order given (give them in time
// order), each decoded anew on every pass.
func Files(paths ...string) Packets {
	return func(fn func(*Packet)) error {
		for _, p := range paths {
			if err := EachFile(p, fn); err != nil {
				return err
			}
		}
		return nil
	}
}

// Outage is OutageOf over packets in memory, with no loss budget.
func Outage(pkts []Packet, m Match, minGap, maxOutage time.Duration) OutageVerdict {
	v, _ := OutageOf(Slice(pkts), m, OutageOptions{MinGap: minGap, MaxOutage: maxOutage, MaxLost: -1})
	return v
}

// Bounds that keep the outage analyzer's memory fixed whatever the capture's size.
const (
	maxFlows     = 4096    // directed flows told apart (requests vs replies)
	maxGapSample = 1 << 16 // inter-arrival gaps sampled for the median
	maxWindows   = 1000    // windows listed (the rest are counted)
	dupHorizon   = 1 << 14 // recent sequence numbers remembered for duplicates
)

type flowKey struct {
	src, dst   netip.Addr
	sport, dpt uint16
	proto      layers.IPProtocol
}

func keyOf(p *Packet) flowKey {
	return flowKey{p.Src, p.Dst, p.SrcPort, p.DstPort, p.Proto}
}

func (k flowKey) reverse() flowKey {
	return flowKey{k.dst, k.src, k.dpt, k.sport, k.proto}
}

// OutageOf finds loss windows in the stream of packets matching m. When the capture
// holds both directions of a request/reply stream (flows matched by addresses, ports
// and order of appearance: no payload format needed), it measures the replies: a gap
// in the replies while requests go on is the outage, requests after the last reply are
// an unrecovered window, and requests without a reply are lost. With one direction
// only, it measures that stream, and v6lab probe sequence numbers give the loss. It
// reads its input in three passes and keeps no packet: memory is bounded whatever the
// capture's size. Only a read error is an error; a capture that proves nothing is a
// failed verdict.
func OutageOf(pkts Packets, m Match, o OutageOptions) (OutageVerdict, error) {
	v := OutageVerdict{Check: "outage", Windows: []Window{}, Measured: "stream", MaxLost: o.MaxLost}
	// Pass 1: which directed flows are there, and which answer which.
	type flow struct {
		first time.Time
		order int
	}
	flows := map[flowKey]flow{}
	err := pkts(func(p *Packet) {
		if !m.Matches(p) {
			return
		}
		k := keyOf(p)
		if _, ok := flows[k]; !ok && len(flows) < maxFlows {
			flows[k] = flow{first: p.Time, order: len(flows)}
		}
	})
	if err != nil {
		return v, err
	}
	replies := map[flowKey]bool{}
	for k, f := range flows {
		if r, ok := flows[k.reverse()]; ok && (r.order < f.order) {
			replies[k] = true // the reverse flow appeared first: this one answers it
		}
	}
	paired := len(replies) > 0 || o.Client.IsValid()
	if paired {
		v.Measured = "replies"
	}
	role := func(p *Packet) (measured, request bool) {
		if !m.Matches(p) {
			return false, false
		}
		if !paired {
			return true, false
		}
		if o.Client.IsValid() {
			return p.Dst == o.Client, p.Src == o.Client
		}
		k := keyOf(p)
		if replies[k] {
			return true, false
		}
		return false, replies[k.reverse()]
	}

	// Pass 2: the inter-arrival times of the measured stream, sampled (every
	// stride-th gap once the sample is full), for the median.
	var sample []time.Duration
	stride, seen := 1, 0
	var last time.Time
	n := 0
	if err := pkts(func(p *Packet) {
		if meas, _ := role(p); !meas {
			return
		}
		if n > 0 {
			g := max(p.Time.Sub(last), 0)
			if seen%stride == 0 {
				sample = append(sample, g)
				if len(sample) == maxGapSample {
					half := sample[:0]
					for i := 0; i < len(sample); i += 2 {
						half = append(half, sample[i])
					}
					sample, stride = half, stride*2
				}
			}
			seen++
		}
		if p.Time.After(last) || n == 0 {
			last = p.Time
		}
		n++
	}); err != nil {
		return v, err
	}
	minGap := o.MinGap
	if len(sample) > 0 {
		sort.Slice(sample, func(i, j int) bool { return sample[i] < sample[j] })
		v.MedianIntervalMs = ms(sample[len(sample)/2])
		if minGap <= 0 {
			minGap = 3 * sample[len(sample)/2]
		}
	}
	v.MinGapMs = ms(minGap)

	// Pass 3: windows, probe sequence accounting, requests after the last reply.
	// The previous measured packet: what a window's edge needs of it, kept by value
	// (the Packet itself is reused by the reader).
	type edge struct {
		time     time.Time
		index    int
		seq      uint64
		hasProbe bool
	}
	var (
		prev              *edge
		prevEdge          edge
		seq               seqTracker
		firstReq, lastReq time.Time
	)
	if err := pkts(func(p *Packet) {
		meas, req := role(p)
		if req {
			if v.Requests == 0 {
				firstReq = p.Time
			}
			if p.Time.After(lastReq) {
				lastReq = p.Time
			}
			v.Requests++
			return
		}
		if !meas {
			return
		}
		v.Packets++
		if p.Probe != nil {
			seq.add(p.Probe.Seq, &v)
		}
		if prev != nil {
			g := p.Time.Sub(prev.time)
			if ms(g) > v.MaxGapMs {
				v.MaxGapMs = ms(g)
			}
			if g > minGap {
				w := Window{Start: prev.time, End: p.Time, DurationMs: ms(g), LastBefore: prev.index, FirstAfter: p.Index}
				if prev.hasProbe && p.Probe != nil && p.Probe.Seq > prev.seq+1 {
					w.LostSeqFrom, w.LostSeqTo = prev.seq+1, p.Probe.Seq-1
				}
				v.addWindow(w)
			}
			if !p.Time.After(prev.time) {
				return // out of order: the window edge stays at the latest packet
			}
		}
		prevEdge = edge{time: p.Time, index: p.Index, hasProbe: p.Probe != nil}
		if p.Probe != nil {
			prevEdge.seq = p.Probe.Seq
		}
		prev = &prevEdge
	}); err != nil {
		return v, err
	}
	if paired {
		v.Replies = v.Packets
		v.Lost = max(v.Requests-v.Replies, 0)
		switch {
		case v.Replies == 0 && v.Requests > 0:
			v.addWindow(Window{Start: firstReq, End: lastReq, DurationMs: ms(lastReq.Sub(firstReq)), Unrecovered: true})
			v.Unrecovered = true
		case prev != nil && lastReq.Sub(prev.time) > minGap:
			v.addWindow(Window{Start: prev.time, End: lastReq, DurationMs: ms(lastReq.Sub(prev.time)), LastBefore: prev.index, Unrecovered: true})
			v.Unrecovered = true
		}
		if v.Requests > 0 {
			v.LostFraction = float64(v.Lost) / float64(v.Requests)
		}
	} else {
		v.Lost = seq.lost()
		if span := seq.span(); span > 0 {
			v.LostFraction = float64(v.Lost) / float64(span)
		}
	}
	if v.Unrecovered {
		v.MaxGapMs = max(v.MaxGapMs, v.Windows[len(v.Windows)-1].DurationMs)
	}
	v.judge(o)
	return v, nil
}

func (v *OutageVerdict) addWindow(w Window) {
	if len(v.Windows) < maxWindows {
		v.Windows = append(v.Windows, w)
	} else {
		v.WindowsDropped++
	}
}

func (v *OutageVerdict) judge(o OutageOptions) {
	if v.Packets+v.Requests < 2 {
		v.Reason = "fewer than two matching packets: the capture proves nothing"
		return
	}
	if o.MaxOutage > 0 {
		v.MaxOutageMs = ms(o.MaxOutage)
	}
	var why []string
	if v.Unrecovered {
		why = append(why, "the stream did not recover: requests went on after the last reply")
	}
	if o.MaxOutage > 0 {
		for _, w := range v.Windows {
			if w.DurationMs > v.MaxOutageMs {
				why = append(why, fmt.Sprintf("a loss window of %.0f ms exceeds the limit of %.0f ms", w.DurationMs, v.MaxOutageMs))
				break
			}
		}
	}
	if o.MaxLost >= 0 && v.LostFraction > o.MaxLost {
		why = append(why, fmt.Sprintf("%d probes lost (%.1f%%), more than the %.1f%% budget", v.Lost, 100*v.LostFraction, 100*o.MaxLost))
	}
	switch {
	case len(why) > 0:
		v.Reason = why[0]
		for _, w := range why[1:] {
			v.Reason += "; " + w
		}
	case o.MaxOutage > 0:
		v.Pass, v.Reason = true, "no window exceeds the limit"
	default:
		v.Pass, v.Reason = true, "no limit given; windows reported"
	}
}

// seqTracker counts probe sequence numbers in bounded memory: numbers are unwrapped
// (a step is the signed difference from the previous number, so 2^64-1 -> 0 is +1),
// duplicates are recognised within the last dupHorizon numbers, and loss is the span
// minus the distinct numbers seen (never negative).
type seqTracker struct {
	n              int
	prev           uint64
	ext, min, maxE int64
	distinct       int
	recent         map[int64]bool
	ring           []int64
}

func (s *seqTracker) add(seq uint64, v *OutageVerdict) {
	if s.n == 0 {
		s.recent = map[int64]bool{}
		s.ext, s.min, s.maxE = 0, 0, 0
	} else {
		s.ext += int64(seq - s.prev)
	}
	s.prev = seq
	s.n++
	if s.recent[s.ext] {
		v.Duplicates++
		return
	}
	if s.distinct > 0 && s.ext < s.maxE {
		v.Reordered++
	}
	s.min, s.maxE = min(s.min, s.ext), max(s.maxE, s.ext)
	s.distinct++
	s.recent[s.ext] = true
	s.ring = append(s.ring, s.ext)
	if len(s.ring) > dupHorizon {
		delete(s.recent, s.ring[0])
		s.ring = s.ring[1:]
	}
}

func (s *seqTracker) span() int {
	if s.distinct == 0 {
		return 0
	}
	return int(s.maxE - s.min + 1)
}

func (s *seqTracker) lost() int { return max(s.span()-s.distinct, 0) }
