package reports

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
)

// Change is one difference between two runs.
type Change struct {
	Check      string  `json:"check"`
	Figure     string  `json:"figure,omitempty"` // empty for a verdict change
	From       string  `json:"from"`
	To         string  `json:"to"`
	DeltaPct   float64 `json:"deltaPct,omitempty"`
	Regression bool    `json:"regression"`
}

// Tolerance says when a figure has moved: by more than Relative (a fraction) and more
// than Absolute (in the figure's unit). Only figures where larger is worse (times:
// names with _ms) count as regressions when they grow.
//
// A check may say how far one measurement can spread by itself: a figure
// spread_ms_<what> widens the absolute tolerance of every <x>_ms_<what> figure of that
// check by the spread, and spread_lost_<what> that of lost_<what> (the same outage
// counted in lost probes). Failure detection by a timer is the example: a node that stops
// is found hold time after its last keepalive, which came anywhere in the keepalive
// interval before, so one outage lies anywhere in [hold-keepalive, hold] (6-9 s with
// hold 9 s), whatever the Cilium release. A figure spread_<figure> (SpreadOf) widens
// that one figure's tolerance alone: an outage the routers see at once lies between 0
// and about the time the withdrawal takes, while that withdrawal time itself is judged
// as it is.
type Tolerance struct {
	Relative float64
	Absolute float64
}

// DefaultTolerance: 20% and 100 units (ms for timings: below 100 ms a loss window is a
// handful of 10 ms probes, the run-to-run noise of one sample; measured 0-68 ms for the
// same link-down fault on the same lab).
var DefaultTolerance = Tolerance{Relative: 0.20, Absolute: 100}

// SpreadPrefix and SpreadLostPrefix name the figures that widen the tolerance of a
// measurement in time and in lost probes.
const (
	SpreadPrefix     = "spread_ms_"
	SpreadLostPrefix = "spread_lost_"
)

// SpreadOf names the figure that widens the tolerance of one figure alone.
func SpreadOf(figure string) string { return "spread_" + figure }

// absoluteFor is the absolute tolerance of one figure of a check in runs a and b.
func (t Tolerance) absoluteFor(figure string, a, b Check) float64 {
	var key string
	own := SpreadOf(figure)
	switch i := strings.Index(figure, "_ms_"); {
	case strings.HasPrefix(figure, "spread_"):
		return t.Absolute
	case a.Figures[own] > 0 || b.Figures[own] > 0 || a.Config[own] > 0 || b.Config[own] > 0:
		key = own
	case i >= 0:
		key = SpreadPrefix + figure[i+len("_ms_"):]
	case strings.HasPrefix(figure, "lost_"):
		key = SpreadLostPrefix + strings.TrimPrefix(figure, "lost_")
	default:
		return t.Absolute
	}
	// The run-to-run noise of a sample and the measurement's own spread (measured, or
	// from the spec's configuration) add up.
	return t.Absolute + math.Max(math.Max(a.Figures[key], b.Figures[key]), math.Max(a.Config[key], b.Config[key]))
}

// Compare lists what changed from run a (e.g. Cilium 1.18.4) to run b (1.20.2):
// verdicts that changed and figures that moved. A check that passed in a and does not
// in b, or a worse-is-larger figure that grew beyond the tolerance, is a regression.
func Compare(a, b *Report, tol Tolerance) []Change {
	bByName := byName(b.Checks)
	var out []Change
	for _, ca := range a.Checks {
		cb, ok := bByName[ca.Name]
		if !ok {
			out = append(out, Change{Check: ca.Name, From: string(ca.Effective()), To: "missing",
				Regression: ca.Effective() == Pass})
			continue
		}
		ea, eb := ca.Effective(), cb.Effective()
		if ea != eb {
			out = append(out, Change{Check: ca.Name, From: string(ea), To: string(eb), Regression: ea == Pass && eb != Pass})
		}
		for _, n := range labFigures(ca) {
			va := ca.Figures[n]
			vb, ok := cb.Figures[n]
			if !ok {
				continue
			}
			diff := vb - va
			rel := 0.0
			if va != 0 {
				rel = diff / math.Abs(va)
			}
			if math.Abs(diff) <= tol.absoluteFor(n, ca, cb) || (va != 0 && math.Abs(rel) <= tol.Relative) {
				continue
			}
			out = append(out, Change{Check: ca.Name, Figure: n, From: fmt.Sprintf("%g", va), To: fmt.Sprintf("%g", vb),
				DeltaPct: math.Round(rel*1000) / 10, Regression: diff > 0 && worseIfLarger(n)})
		}
	}
	for _, cb := range b.Checks {
		found := false
		for _, ca := range a.Checks {
			found = found || ca.Name == cb.Name
		}
		if !found {
			out = append(out, Change{Check: cb.Name, From: "missing", To: string(cb.Effective())})
		}
	}
	return out
}

// worseIfLarger says which figures regress when they grow: times (…_ms, also with a
// qualifier after them, as outage_ms_link-down). Lost-packet counts are the same
// outage counted in probes (they move, but only the time is judged, with its
// tolerance); a negative control's figures, configured thresholds and spreads are not
// measurements of the lab's quality, nor is a behaviour a check measures without judging
// it (kept_…: e.g. how long Cilium keeps an established flow on an unready backend,
// a design choice that changed between releases): those are shown when they move,
// never as a regression.
func worseIfLarger(figure string) bool {
	for _, p := range []string{"control_", "threshold", "spread_", "kept_"} {
		if strings.HasPrefix(figure, p) {
			return false
		}
	}
	return strings.HasSuffix(figure, "_ms") || strings.Contains(figure, "_ms_")
}

// Regressed reports whether any change is a regression.
func Regressed(changes []Change) bool {
	for _, c := range changes {
		if c.Regression {
			return true
		}
	}
	return false
}

// WriteChanges prints changes side by side for people.
func WriteChanges(w io.Writer, a, b *Report, changes []Change) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "A: %s\nB: %s\n\n", a.suiteName(), b.suiteName())
	if len(changes) == 0 {
		fmt.Fprintln(tw, "no verdict changed and no figure moved beyond the tolerance")
		return tw.Flush()
	}
	fmt.Fprintln(tw, "CHECK\tWHAT\tA\tB\tCHANGE\t")
	for _, c := range changes {
		what, delta := "verdict", ""
		if c.Figure != "" {
			what, delta = c.Figure, fmt.Sprintf("%+.1f%%", c.DeltaPct)
			if c.From == "0" {
				delta = "from 0"
			}
		}
		if c.Regression {
			delta += " REGRESSION"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", c.Check, what, c.From, c.To, strings.TrimSpace(delta))
	}
	return tw.Flush()
}

// WriteFigures prints every measured figure of two runs side by side (a negative
// control's figures left out): the timings of both releases even when none moved.
func WriteFigures(w io.Writer, a, b *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tFIGURE\tA\tB\t")
	bByName := byName(b.Checks)
	for _, ca := range a.Checks {
		for _, n := range labFigures(ca) {
			vb := "-"
			if v, ok := bByName[ca.Name].Figures[n]; ok {
				vb = fmt.Sprintf("%g", v)
			}
			fmt.Fprintf(tw, "%s\t%s\t%g\t%s\t\n", ca.Name, n, ca.Figures[n], vb)
		}
	}
	return tw.Flush()
}

// labFigures are a check's figure names, sorted, without its negative control's (they
// describe the lab broken on purpose).
func labFigures(c Check) []string {
	names := make([]string, 0, len(c.Figures))
	for n := range c.Figures {
		if !strings.HasPrefix(n, "control_") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

func byName(checks []Check) map[string]Check {
	m := make(map[string]Check, len(checks))
	for _, c := range checks {
		m[c.Name] = c
	}
	return m
}
