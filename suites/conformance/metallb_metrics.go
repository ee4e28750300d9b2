package conformance

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"v6lab.dev/v6lab/labs/metrics"
	"v6lab.dev/v6lab/reports"
)

// MetalLB's metrics around every check: on a MetalLB lab each speaker's two endpoints
// (the speaker's own, and frr-metrics: what its FRR says of its BGP sessions) are read
// at the same marks as the drop ledger, through the API server's pod proxy (a
// speaker serves on its node's data address, which only the lab routes), and the
// series that changed in a check's run or control are recorded with it: what MetalLB
// itself says happened, next to what the wire showed.

// metallbPorts are the speaker pod's metrics ports (the chart's prometheus.metricsPort
// and speaker.frr.metricsPort).
var metallbPorts = []string{"7472", "7473"}

// metallbFamilies are the series recorded: sessions and the messages that change them,
// routes announced, what the speaker announces; not keepalives, which tick anyway.
var metallbFamilies = []string{
	"metallb_bgp_session_up", "metallb_bgp_opens_sent", "metallb_bgp_opens_received",
	"metallb_bgp_notifications_sent", "metallb_bgp_updates_total", "metallb_bgp_updates_total_received",
	"metallb_bgp_announced_prefixes_total",
	"metallb_bfd_session_up", "metallb_bfd_session_up_events", "metallb_bfd_session_down_events",
	"metallb_speaker_announced",
}

// metallbLedger holds each speaker's series at the latest mark, by node.
type metallbLedger struct {
	last map[string]map[string]float64
}

// metallbSeries reads every speaker's series, by node; a speaker that does not answer
// is left out, with why.
func (x *Lab) metallbSeries(ctx context.Context) (map[string]map[string]float64, []string) {
	pods, err := x.Client.CoreV1().Pods("metallb-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=speaker"})
	if err != nil {
		return nil, []string{"speakers: " + err.Error()}
	}
	out := map[string]map[string]float64{}
	var errs []string
	for _, p := range pods.Items {
		if p.Status.Phase != "Running" {
			continue
		}
		node := p.Spec.NodeName
		for _, port := range metallbPorts {
			sctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
			body, err := x.Client.CoreV1().Pods(p.Namespace).ProxyGet("http", p.Name, port, "metrics", nil).DoRaw(sctx)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s:%s: %v", p.Name, port, err))
				continue
			}
			f, err := metrics.Parse(bytes.NewReader(body))
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s:%s: %v", p.Name, port, err))
				continue
			}
			if out[node] == nil {
				out[node] = map[string]float64{}
			}
			for s, v := range metrics.Series(f, metallbFamilies...) {
				out[node][s] = v
			}
		}
	}
	return out, errs
}

// markMetalLB reads the speakers and says, as evidence, which of their series changed
// since the last mark (what ran in between: label). Nothing on a lab without MetalLB.
func (x *Lab) markMetalLB(ctx context.Context, label string) []reports.Evidence {
	if !x.Lab.Spec.Spec.LoadBalancer.UsesMetalLB() {
		return nil
	}
	now, errs := x.metallbSeries(ctx)
	at := time.Now()
	x.mu.Lock()
	defer x.mu.Unlock()
	l := &x.metallb
	var ev []reports.Evidence
	for _, e := range errs {
		ev = append(ev, reports.Evidence{Time: at, Note: "MetalLB metrics (" + label + "): not read: " + e})
	}
	if l.last != nil {
		for _, n := range keys(now) {
			before, ok := l.last[n]
			if !ok {
				continue
			}
			cs := metrics.Changes(before, now[n])
			if len(cs) == 0 {
				continue
			}
			lines := make([]string, len(cs))
			for i, c := range cs {
				lines[i] = c.String()
			}
			ev = append(ev, reports.Evidence{Time: at, Src: n,
				Note: fmt.Sprintf("MetalLB metrics on %s changed over %s: %s", n, label, strings.Join(lines, "; "))})
		}
	} else {
		l.last = map[string]map[string]float64{}
	}
	for n, s := range now {
		l.last[n] = s
	}
	return ev
}
