package conformance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/reports"
)

// Captures on the lab's links, with their sanity rules, recorded in the report.

// Captured is one finished capture, decoded.
type Captured struct {
	Point   string // member:iface
	File    string // relative to the run directory
	Packets []verdict.Packet
	Drops   uint // frames the kernel dropped before the capture read them
}

// captureOpt adjusts a capture's sanity rules.
type captureOpt func(map[string]bool)

// silentOK lets these points see nothing (a node the traffic may not cross); every
// other point of a capture must see traffic.
func silentOK(points ...string) captureOpt {
	return func(m map[string]bool) {
		for _, p := range points {
			m[p] = true
		}
	}
}

// ErrEvidenceIncomplete marks a capture that cannot back a verdict: the kernel dropped
// frames, or a point that must see the traffic saw none.
var ErrEvidenceIncomplete = errors.New("evidence incomplete")

// Capture runs fn while capturing at the given points (member:iface) with a filter, into
// pcap/<check>/ of the run directory. Sanity: a point whose socket dropped frames, or
// one that saw nothing (unless silentOK), makes the capture an error
// (ErrEvidenceIncomplete): a verdict is never judged on half the packets.
func (x *Lab) Capture(ctx context.Context, check string, f capture.Filter, points []string, fn func() error, opts ...captureOpt) (map[string]Captured, error) {
	quiet := map[string]bool{}
	for _, o := range opts {
		o(quiet)
	}
	dir := filepath.Join(x.RunDir, "pcap", check)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var specs []capture.Spec
	for _, pt := range points {
		member, iface, ok := strings.Cut(pt, ":")
		if !ok {
			return nil, fmt.Errorf("capture point %q: want member:iface", pt)
		}
		specs = append(specs, capture.Spec{Name: member + "-" + iface, Container: x.Plan.ContainerName(member), Iface: iface, Filter: f})
	}
	s, err := capture.Start(ctx, dir, 5*time.Minute, specs...)
	if err != nil {
		return nil, err
	}
	time.Sleep(200 * time.Millisecond) // the sockets are bound; let the first frames in
	ferr := fn()
	time.Sleep(200 * time.Millisecond)
	res := s.Stop()
	if ferr != nil {
		return nil, ferr
	}
	out := map[string]Captured{}
	var bad []string
	for i, r := range res {
		if r.Err != nil {
			return nil, fmt.Errorf("capture at %s: %w", points[i], r.Err)
		}
		pkts, err := verdict.ReadFile(r.File)
		if err != nil {
			return nil, err
		}
		rel, _ := filepath.Rel(x.RunDir, r.File)
		out[points[i]] = Captured{Point: points[i], File: rel, Packets: pkts, Drops: r.Drops}
		switch {
		case r.Drops > 0:
			bad = append(bad, fmt.Sprintf("%s dropped %d frames", points[i], r.Drops))
		case len(pkts) == 0 && !quiet[points[i]]:
			bad = append(bad, points[i]+" saw no packet")
		}
	}
	x.recordCaptures(ctx, check, out)
	if len(bad) > 0 {
		return out, fmt.Errorf("%w: %s", ErrEvidenceIncomplete, strings.Join(bad, "; "))
	}
	return out, nil
}

// captureLog holds the sanity figures of one check's captures: checks that run
// concurrently each keep their own (WithCaptureLog), so a record gets only its check's.
type captureLog struct {
	mu   sync.Mutex
	list []reports.Capture
}

type captureLogKey struct{}

// WithCaptureLog gives the captures made under ctx a log of their own, which
// TakeCaptures(ctx) empties; captures made under a context without one go to the lab's.
func WithCaptureLog(ctx context.Context) context.Context {
	return context.WithValue(ctx, captureLogKey{}, &captureLog{})
}

// recordCaptures keeps every capture's sanity figures for the report.
func (x *Lab) recordCaptures(ctx context.Context, check string, caps map[string]Captured) {
	mu, list := x.captureList(ctx)
	mu.Lock()
	defer mu.Unlock()
	for _, c := range caps {
		*list = append(*list, reports.Capture{Name: check, Point: c.Point, File: c.File, Packets: len(c.Packets), Drops: int(c.Drops)})
	}
}

func (x *Lab) captureList(ctx context.Context) (*sync.Mutex, *[]reports.Capture) {
	if l, ok := ctx.Value(captureLogKey{}).(*captureLog); ok {
		return &l.mu, &l.list
	}
	return &x.mu, &x.captures
}

// TakeCaptures returns the captures recorded (under ctx's log) since the last call.
func (x *Lab) TakeCaptures(ctx context.Context) []reports.Capture {
	mu, list := x.captureList(ctx)
	mu.Lock()
	defer mu.Unlock()
	out := *list
	*list = nil
	sort.Slice(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out
}

// Uplink is a node's capture point toward its router.
// Where the lab asks for XDP acceleration it is the router's end of the link: a
// frame XDP handles on the node (dropped, sent back out, redirected) never reaches
// a packet socket on the node's own end, and the wire is the same at the other.
func (x *Lab) Uplink(node string) string {
	for _, n := range x.Plan.KubeNodes {
		if n.Name == node {
			if x.Lab.Spec.Spec.LoadBalancer.Acceleration.Asked() {
				return n.Router + ":" + n.RouterIface
			}
			return n.Name + ":" + n.Iface
		}
	}
	return node + ":eth1"
}

// HostLink is a host's capture point (by role) toward its router.
func (x *Lab) HostLink(role string) string {
	h := x.Plan.HostByRole(planRole(role))
	return h.Name + ":" + h.Iface
}

// Evidence converts verdict evidence for the report.
func Evidence(file string, ev []verdict.Evidence) []reports.Evidence {
	var out []reports.Evidence
	for _, e := range ev {
		f := e.File
		if f == "" {
			f = file
		}
		out = append(out, reports.Evidence{File: f, Frame: e.Frame, Time: e.Time, Src: e.Src, Dst: e.Dst, Note: e.Note})
	}
	return out
}
