package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"v6lab.dev/v6lab/labs/metrics"
	"v6lab.dev/v6lab/labs/render/cilium"
)

// The drop ledger: every agent's drop counters (cilium_drop_count_total, read from its
// Prometheus endpoint) at each boundary of the suite — before the workload, after each
// check's run and after its control (its restore included) — so that every drop the
// agents count falls into one window, which says what ran then and which drop reasons
// that may cause (Check.PassDrops, Check.ControlDrops). no-unexpected-drops judges the
// windows.

// dropWindow is what the agents dropped between two marks.
type dropWindow struct {
	Label    string // what ran: "workload", "<check>", "<check> control"
	Allowed  []string
	From, To time.Time
	Drops    map[string]map[metrics.Drop]float64 // by node
}

// dropLedger is the suite's record of windows; last holds each node's counters at the
// latest mark.
type dropLedger struct {
	last    map[string]map[metrics.Drop]float64
	at      time.Time
	windows []dropWindow
	errs    []string
}

// scrapeTimeout bounds one scrape; a mark tries each agent for up to markTries times.
const (
	scrapeTimeout = 5 * time.Second
	markTries     = 5
)

// dropCounters reads every node's drop counters; a node whose agent does not answer
// (markTries tries a second apart) is left out, with why.
func (x *Lab) dropCounters(ctx context.Context) (map[string]map[metrics.Drop]float64, []string) {
	out := map[string]map[metrics.Drop]float64{}
	var errs []string
	for _, n := range x.Plan.KubeNodes {
		a, ok := x.Plan.Management.Addresses[n.Name]
		if !ok {
			errs = append(errs, n.Name+": no management address in the plan")
			continue
		}
		url := fmt.Sprintf("http://%s/metrics", netip.AddrPortFrom(a, cilium.MetricsPort))
		var err error // the last scrape's
		werr := wait.ExponentialBackoffWithContext(ctx, wait.Backoff{Duration: time.Second, Factor: 1, Steps: markTries}, func(ctx context.Context) (bool, error) {
			var f metrics.Families
			if f, err = metrics.Scrape(ctx, url, scrapeTimeout); err != nil {
				return false, nil
			}
			out[n.Name] = metrics.Drops(f) // empty when the agent has dropped nothing yet
			return true, nil
		})
		if werr != nil {
			if err == nil { // the run ended before a try
				err = werr
			}
			errs = append(errs, fmt.Sprintf("%s: %v", n.Name, err))
		}
	}
	return out, errs
}

// markDrops ends the window since the last mark: label says what ran in it, allowed
// the drop reasons that may cause. The first mark only starts the ledger.
func (x *Lab) markDrops(ctx context.Context, label string, allowed []string) {
	now, errs := x.dropCounters(ctx)
	at := time.Now()
	x.mu.Lock()
	defer x.mu.Unlock()
	l := &x.drops
	for _, e := range errs {
		l.errs = append(l.errs, label+": "+e)
	}
	if l.last != nil {
		w := dropWindow{Label: label, Allowed: allowed, From: l.at, To: at, Drops: map[string]map[metrics.Drop]float64{}}
		for node, after := range now {
			if before, ok := l.last[node]; ok {
				if d := metrics.Delta(before, after); len(d) > 0 {
					w.Drops[node] = d
				}
			}
		}
		l.windows = append(l.windows, w)
	} else {
		l.last = map[string]map[metrics.Drop]float64{}
	}
	for node, c := range now { // a node that did not answer keeps its older counters
		l.last[node] = c
	}
	l.at = at
}

// dropWindows are the windows so far.
func (x *Lab) dropWindows() ([]dropWindow, []string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.drops.windows), slices.Clone(x.drops.errs)
}

// unexpected are a window's drops whose reason it does not allow (nor the lab's
// background), one line each.
func (w dropWindow) unexpected() (lines []string, n float64) {
	for _, node := range keys(w.Drops) {
		ds := w.Drops[node]
		var odd []metrics.Drop
		for d := range ds {
			if !slices.Contains(w.Allowed, d.Reason) && !slices.Contains(backgroundDrops, d.Reason) {
				odd = append(odd, d)
			}
		}
		sort.Slice(odd, func(i, j int) bool { return odd[i].String() < odd[j].String() })
		for _, d := range odd {
			lines = append(lines, fmt.Sprintf("%s dropped %.0f packets: %s", node, ds[d], d))
			n += ds[d]
		}
	}
	return lines, n
}

// summary is a window's drops in one line: "agent1 2 × Invalid source ip (EGRESS), …".
func (w dropWindow) summary() string {
	var parts []string
	for _, node := range keys(w.Drops) {
		for d, v := range w.Drops[node] {
			parts = append(parts, fmt.Sprintf("%s %.0f × %s", node, v, d))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}
