// Package metrics reads the Prometheus text the lab's daemons serve (Cilium agents on
// prometheus.port) with the Prometheus client libraries, and the counters the suite
// judges: Cilium's drops by reason and direction.
package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are one scrape's metric families, by name.
type Families map[string]*dto.MetricFamily

// maxBody bounds what one scrape reads (an agent serves a few hundred KiB).
const maxBody = 32 << 20

// Parse reads Prometheus text format.
func Parse(r io.Reader) (Families, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	f, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("prometheus text: %w", err)
	}
	return f, nil
}

// Scrape fetches url (a /metrics endpoint inside the lab) and parses it, within
// timeout.
func Scrape(ctx context.Context, url string, timeout time.Duration) (Families, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := Parse(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return f, nil
}

// Drop is one of Cilium's drop counters: the reason as the agent names it ("Policy
// denied") and the direction (INGRESS, EGRESS).
type Drop struct {
	Reason    string
	Direction string
}

func (d Drop) String() string { return d.Reason + " (" + d.Direction + ")" }

// DropFamily is the agent's counter of dropped packets.
const DropFamily = "cilium_drop_count_total"

// Drops are the packets Cilium dropped, by reason and direction, summed over the
// family's other labels.
func Drops(f Families) map[Drop]float64 {
	out := map[Drop]float64{}
	mf, ok := f[DropFamily]
	if !ok {
		return out
	}
	for _, m := range mf.GetMetric() {
		var d Drop
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "reason":
				d.Reason = l.GetValue()
			case "direction":
				d.Direction = l.GetValue()
			}
		}
		out[d] += value(m)
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// Delta is how much each counter grew from before to after. A counter lower after
// than before was reset (its agent restarted with a new map): it grew by its value
// after, at least (what it counted before the reset, since before, is lost).
func Delta(before, after map[Drop]float64) map[Drop]float64 {
	out := map[Drop]float64{}
	for d, a := range after {
		b := before[d]
		if a < b {
			b = 0
		}
		if a > b {
			out[d] = a - b
		}
	}
	return out
}

// Series are the samples of the named families (counters, gauges, untyped), one value
// per series, keyed by the family's name and its labels in Prometheus' own notation
// (`metallb_bgp_session_up{peer="[2001:db8::1]:179"}`).
func Series(f Families, names ...string) map[string]float64 {
	out := map[string]float64{}
	for _, name := range names {
		mf, ok := f[name]
		if !ok {
			continue
		}
		for _, m := range mf.GetMetric() {
			ls := model.LabelSet{}
			for _, l := range m.GetLabel() {
				ls[model.LabelName(l.GetName())] = model.LabelValue(l.GetValue())
			}
			key := name
			if len(ls) > 0 {
				key += ls.String()
			}
			out[key] = value(m)
		}
	}
	return out
}

// Change is a series whose value differs between two scrapes: one that appeared has
// no Before, one that went away no After.
type Change struct {
	Series        string
	Before, After *float64
}

func (c Change) String() string {
	v := func(p *float64) string {
		if p == nil {
			return "none"
		}
		return strconv.FormatFloat(*p, 'f', -1, 64)
	}
	return c.Series + " " + v(c.Before) + " → " + v(c.After)
}

// Changes are the series whose value changed from before to after, appeared or went
// away, sorted by series.
func Changes(before, after map[string]float64) []Change {
	var out []Change
	for s, a := range after {
		if b, ok := before[s]; !ok {
			out = append(out, Change{Series: s, After: &a})
		} else if a != b {
			out = append(out, Change{Series: s, Before: &b, After: &a})
		}
	}
	for s, b := range before {
		if _, ok := after[s]; !ok {
			out = append(out, Change{Series: s, Before: &b})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Series < out[j].Series })
	return out
}
