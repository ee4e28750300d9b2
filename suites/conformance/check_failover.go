package conformance

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"v6lab.dev/v6lab/labs/runtime"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/reports"
)

// A UDP probe stream from the client to a VIP runs while the node it enters through
// fails; the outage — measured from the replies' timestamps at the client, with the
// requests captured beside them — must stay within the failure's budget: the spec's
// failure detection time for a failure only a timer finds, the withdrawal budget for
// one the routers see at once. A stream that does not recover, loss spread over the
// stream beyond its budget, and a withdrawal that never came each fail the check.
// Beside the stream, long-lived TCP connections to a VIP with a backend on every node
// show from the wire whether a connection survives the failure (failover_tcp.go).
// The failures are in failover_faults.go (and labs/faults), the stream in
// failover_stream.go.
// The control is a failure BGP cannot see: the same link silently drops the probes
// while its BGP session stays up; the outage lasts as long as the failure.
func failover() Check {
	return Check{
		Name:    "failover",
		Applies: routedVIPs,
		Variant: "the entry node's router link drops the probe stream while BGP stays up (a failure only BFD-like detection would see), for longer than the detection time",
		Expect:  kindOutageOverBudget,
		// The stopped node thawed: packets toward addresses it had not yet relearnt.
		PassDrops: agentRestartDrops,
		Run:       runFailover,
	}
}

// Failure kinds of the failover check beyond the outage budget.
const (
	kindUnrecovered  = "unrecovered"   // the stream never came back
	kindSpreadLoss   = "spread-loss"   // more probes lost than the loss windows account for
	kindNotWithdrawn = "not-withdrawn" // the node's router kept its path through the failed node
)

// eventBudget is the outage allowed for a failure the routers see at once (a link
// down, a session shut): the withdrawal reaches the routers upstream in well under it
// (80-90 ms measured), so it bounds convergence, not detection. Configuration.
const eventBudget = time.Second

// probeInterval is the failover stream's: one probe per 10 ms.
const probeInterval = 10 * time.Millisecond

func runFailover(ctx context.Context, x *Lab, control bool) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	r.config("threshold_ms", float64(threshold(x).Milliseconds()))
	r.config("event_budget_ms", float64(eventBudget.Milliseconds()))
	failures := failoverFailures
	if control {
		failures = []failure{silentDrop}
	}
	vip, err := x.VIP(ctx, x.Plan.Apps[0].Namespace, DSRSvc)
	if err != nil {
		return r, err
	}
	// "Whole" is taken once the routers route every VIP through every node that
	// announces it (bgp-routes' state): a snapshot taken while a session was coming
	// back holds fewer paths than the lab has, and no failure could restore it (a CI
	// run: a node's MetalLB session had flapped just before and announced 1 of its 8
	// prefixes when the snapshot was taken).
	if rr, err := untilPass(ctx, x, time.Minute, routesOnce); err != nil || !rr.Pass {
		return r, fmt.Errorf("the routers do not route the VIPs through every node before the first failure: %s (%v)", rr.Reason, err)
	}
	whole, err := vipRoutes(ctx, x, vip)
	if err != nil {
		return r, err
	}
	for _, f := range failures {
		if err := measureFailure(ctx, x, f, &r); err != nil {
			return r, fmt.Errorf("%s: %w", f.name, err)
		}
		// The lab is whole again before the next failure: sessions up, and every
		// router's paths toward the VIP what they were (a path that comes back moves
		// flows between the nodes: a stream measured meanwhile may leave the node
		// the failure is injected on).
		start := time.Now()
		if err := runtime.WaitReady(ctx, x.Plan, x.Kubeconfig, 5*time.Minute); err != nil {
			return r, fmt.Errorf("after %s: %w", f.name, err)
		}
		ready := time.Since(start)
		if err := waitPaths(ctx, x, vip, whole, 2*time.Minute); err != nil {
			return r, fmt.Errorf("after %s: %w", f.name, err)
		}
		slog.Info("failover: the lab whole again", "fault", f.name, "ready", ready.Round(time.Millisecond), "paths", (time.Since(start) - ready).Round(time.Millisecond))
	}
	return r, nil
}

// measureFailure runs probe streams until one enters through a node other than the
// backend's (new streams pick new source ports, hence new ECMP paths), injects the
// failure on that node, and judges the outage into r. A stream seen through two nodes,
// one whose outage of 0 ms the entry node's uplink does not show crossing that node up
// to the fault, or one a stopped node cost nothing, left its node: another is tried.
func measureFailure(ctx context.Context, x *Lab, f failure, r *Result) error {
	// An attempt whose streams all enter through the backend's node costs ~2 s; where
	// half the paths lead there (one leaf serves only that node), one in eight
	// attempts does, and 16 in a row never in practice ((1/8)^16).
	const maxAttempts = 16
	r.config("budget_ms_"+f.name, float64(f.budgetFor(x).Milliseconds()))
	r.config("kept_ms_"+f.name, float64(f.keepFor(bgpHold(x)).Milliseconds()))
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		run, err := failoverOnce(ctx, x, f, attempt)
		if err != nil {
			return err
		}
		if run.entry == "" {
			continue
		}
		measured, err := judgeOutage(x, f, run, attempt, r)
		if err != nil || !measured {
			return err
		}
		r.figure("attempts_"+f.name, float64(attempt))
		return judgeTCP(x, f, run, r)
	}
	return fmt.Errorf("none of %d probe streams entered through one node other than the backend's and stayed on it: no failover to measure", maxAttempts)
}

// judgeOutage judges the UDP stream of one run into r; measured is false when the run
// proved nothing about the failure (another is tried).
func judgeOutage(x *Lab, f failure, run failoverRun, attempt int, r *Result) (measured bool, err error) {
	client := x.Plan.HostByRole("client")
	c := run.caps[x.HostLink("client")]
	// The measured stream alone (its source port: the others ran beside it).
	v, err := verdict.OutageOf(verdict.Slice(c.Packets), verdict.Match{Proto: "udp", Port: run.port},
		verdict.OutageOptions{Client: client.Address, MaxLost: -1})
	if err != nil {
		return false, err
	}
	var worst verdict.Window
	windowed := 0.0 // ms of loss windows, the probes they account for
	for _, w := range v.Windows {
		windowed += w.DurationMs
		if w.DurationMs > worst.DurationMs {
			worst = w
		}
	}
	if len(v.Windows) == 0 {
		// No outage at all: proven only if the stream crossed the faulted node up to
		// the fault (else the routers had moved it off that node before), and a node
		// stopped under the stream always loses probes until a timer finds it.
		if f.timed || !crossedUntil(run.caps[x.Uplink(run.entry)].Packets, client.Address, run.vip, run.port, run.faultAt) {
			slog.Info("failover: the stream lost nothing, and the entry node's uplink does not show it crossing that node up to the fault: another flow",
				"fault", f.name, "attempt", attempt, "entry", run.entry)
			return false, nil
		}
	}
	r.pcaps(run.caps)
	budget := f.budgetFor(x)
	r.figure("outage_ms_"+f.name, worst.DurationMs)
	r.figure("lost_"+f.name, float64(v.Lost))
	switch {
	case v.Unrecovered:
		r.fail(kindUnrecovered, "%s of %s: the stream did not recover (requests went on %.0f ms after the last reply)", f.name, run.entry, worst.DurationMs)
	case worst.DurationMs > float64(budget.Milliseconds()):
		r.fail(kindOutageOverBudget, "%s of %s: outage %.0f ms exceeds its budget of %s", f.name, run.entry, worst.DurationMs, budget)
	}
	// Lost probes beyond what the loss windows account for are loss spread over the
	// stream (every other probe lost makes no window at all): 1% of the requests and
	// one probe of slack.
	if allowed := int(windowed/float64(probeInterval.Milliseconds())) + v.Requests/100 + 1; v.Lost > allowed {
		r.fail(kindSpreadLoss, "%s of %s: %d of %d probes lost, %d more than the loss windows (%.0f ms) account for", f.name, run.entry, v.Lost, v.Requests, v.Lost-allowed, windowed)
	}
	if f.withdraws && run.withdrawn < 0 {
		r.fail(kindNotWithdrawn, "%s of %s: %s kept its path toward %s through the node", f.name, run.entry, x.node(run.entry).Router, run.vip)
	}
	switch {
	case f.timed: // the timer's spread: the outage's, the withdrawal's, the lost probes' (configuration)
		spread := detectionSpread(x)
		r.config(reports.SpreadPrefix+f.name, float64(spread.Milliseconds()))
		r.config(reports.SpreadLostPrefix+f.name, float64(spread/probeInterval))
	case run.withdrawn >= 0:
		// Seen at once by the routers: the stream may have had another way at the
		// node's router (no outage) or none until the withdrawal reached the routers
		// upstream, so one outage lies between 0 and about the withdrawal time of the
		// same run, measured at the node's router (link-down: outages of 0, 0, 68 and
		// 106 ms, withdrawals 80-85 ms; compare adds its 100 ms for the rest). The
		// withdrawal time itself keeps the plain tolerance. Measured.
		r.figure(reports.SpreadOf("outage_ms_"+f.name), float64(run.withdrawn.Milliseconds()))
		r.figure(reports.SpreadLostPrefix+f.name, float64(run.withdrawn/probeInterval))
	}
	if run.withdrawn >= 0 {
		r.figure("withdraw_ms_"+f.name, float64(run.withdrawn.Milliseconds()))
	}
	r.Timeline = append(r.Timeline, reports.Event{At: run.faultAt, Label: f.name + ": " + run.entry, Until: run.restoredAt})
	for _, w := range v.Windows {
		label := fmt.Sprintf("no replies (%.0f ms)", w.DurationMs)
		if w.Unrecovered {
			label = fmt.Sprintf("no replies, unrecovered (%.0f ms)", w.DurationMs)
		}
		r.Timeline = append(r.Timeline, reports.Event{At: w.Start, Label: label, Until: w.End})
	}
	if v.Replies == 0 && !v.Unrecovered {
		r.fail(kindNothingSeen, "%s: no reply captured at the client: nothing measured", f.name)
	}
	r.Evidence = append(r.Evidence, reports.Evidence{File: c.File, Time: run.faultAt,
		Note: fmt.Sprintf("%s on %s; %d loss windows; longest %.0f ms; %d of %d probes lost", f.name, run.entry, len(v.Windows), worst.DurationMs, v.Lost, v.Requests)})
	return true, nil
}
