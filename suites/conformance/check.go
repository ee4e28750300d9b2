package conformance

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/reports"
)

// Result is one run of a check: on the lab as it is, or on the lab broken on purpose.
type Result struct {
	Pass     bool
	Reason   string
	Failures []string // the kinds of the failed assertions (kind* constants)
	Figures  map[string]float64
	Config   map[string]float64 // values from the spec (budgets, thresholds): configuration, not measured
	Evidence []reports.Evidence
	Pcaps    []string
	Timeline []reports.Event
	// Disagreements are the probes of which Hubble and the wire tell different stories.
	Disagreements []reports.Disagreement
}

// fail records a failed assertion: its kind (what a control declares it must
// produce) and what was seen.
func (r *Result) fail(kind, format string, a ...any) {
	r.Pass = false
	if !slices.Contains(r.Failures, kind) {
		r.Failures = append(r.Failures, kind)
	}
	msg := fmt.Sprintf(format, a...)
	if r.Reason == "" || r.Reason == "ok" {
		r.Reason = msg
	} else {
		r.Reason += "; " + msg
	}
}

func (r *Result) figure(name string, v float64) {
	if r.Figures == nil {
		r.Figures = map[string]float64{}
	}
	r.Figures[name] = v
}

// config records a value taken from the spec, labelled as configuration.
func (r *Result) config(name string, v float64) {
	if r.Config == nil {
		r.Config = map[string]float64{}
	}
	r.Config[name] = v
}

func (r *Result) pcaps(caps map[string]Captured) {
	for _, c := range caps {
		r.Pcaps = append(r.Pcaps, c.File)
	}
	sort.Strings(r.Pcaps)
}

// The kinds of failure a check's assertions report (Result.Failures). A negative
// control declares the one it must produce (Check.Expect); a control that fails only
// for other kinds, or cannot run, is inconclusive.
const (
	kindSourceOutsidePool  = "source-outside-pool"   // a packet's source is outside the app's pod /64
	kindSourceTranslated   = "source-translated"     // a packet left with a source outside every pod pool (masquerade)
	kindSourceRewritten    = "source-rewritten"      // the far end saw another source than the sender's own
	kindNothingSeen        = "nothing-captured"      // the capture holds none of the traffic: nothing proven
	kindUnanswered         = "unanswered"            // requests without their replies
	kindBackendUnreached   = "backend-unreached"     // a backend of a Service never answered
	kindReplyNotFromVIP    = "reply-not-from-vip"    // at the client, a reply from another address than the VIP
	kindRequestNotToVIP    = "request-not-to-vip"    // at the client, a request to another address than the VIP
	kindReplyOnEntryNode   = "reply-on-entry-node"   // DSR: replies left through the node the requests entered by
	kindReturnPathUnproven = "return-path-unproven"  // DSR: the captures cannot show the return path
	kindOutageOverBudget   = "outage-over-budget"    // failover: an outage longer than the spec's detection allows
	kindRouteMissing       = "route-missing"         // a router lacks a route the design requires
	kindRouteMissingHop    = "route-missing-hop"     // a route lacks one of its next hops
	kindRouteOutsidePool   = "route-outside-pool"    // a pod is reached through a prefix outside its pool
	kindRouteForbidden     = "route-forbidden"       // a prefix the design keeps out of the fabric was learned by BGP
	kindRouteNotInstalled  = "route-not-installed"   // a BGP route missing from zebra\'s table, or with fewer next hops
	kindRouteViaNonBackend = "route-via-non-backend" // eTP Local: a route through a node without a backend
	kindBFDDown            = "bfd-down"              // a BFD session is not up
	kindUnexpectedDrop     = "unexpected-drop"       // Cilium dropped packets for a reason nothing that ran explains
)

// Check is one conformance check and its negative control.
type Check struct {
	Name string
	// Applies says why the check does not apply to a lab ("" when it does).
	Applies func(x *Lab) string
	// Run judges the lab; control is true when it runs on the broken lab (or, for a
	// variant, runs the variant).
	Run func(ctx context.Context, x *Lab, control bool) (Result, error)
	// Breakage says what Break breaks; Break returns what undoes it. A check whose
	// control is a Variant of its own run has no Break.
	Breakage string
	Break    func(ctx context.Context, x *Lab) (restore func(context.Context) error, err error)
	// Variant, instead of Break, is a control that breaks nothing on the lab: the run
	// with control=true looks at something else (another Service, a fault BGP cannot
	// see) on which the same assertion must fail. It says what.
	Variant string
	// Expect is the failure kind the control must produce.
	Expect string
	// Concurrent: the group of checks the check runs together with (0: alone). The
	// checks of a group run at once (their controls too, when variants; a control that
	// breaks the lab runs alone, later), where the group's first check stands in the
	// suite's order. It says that neither its run nor its variant disturbs what another
	// check of its group looks at, and that its verdicts and Hubble records count only
	// its own traffic (its own Service, addresses and ports). Of the checks that steer
	// a VIP with static routes on the routers (etp-local, maglev-consistency, pmtu), one
	// at most is in a group: run together, one's routes moved the other's
	// flows (measured: etp-local's forced requests reached the backend's node,
	// maglev-consistency's connections stalled after a move).
	Concurrent int
	// ControlGroup: the group of controls that break the lab this check's control runs
	// with (0: alone). The controls of a group run at once — each its break, its run
	// and its restore — after the last member's run. It says that its break touches
	// nothing another control of its group looks at, nor its run another's break.
	ControlGroup int
	// PassDrops and ControlDrops are the drop reasons (as the agents' metrics name
	// them) that the check's run and its control, restore included, may make Cilium
	// count: no-unexpected-drops fails on any other in their windows.
	PassDrops, ControlDrops []string
}

// The groups of checks that run together (Check.Concurrent).
const (
	// withServices: checks that probe Services, pods and the world host of their own
	// (dns, clusterip, session-affinity, maglev-consistency, backend-removal,
	// gua-egress, dsr-return-path).
	withServices = 1
	// withPolicies: network-policy, whose policies select the applications' echo
	// pods, beside checks on pods none of them selects (the DSR backend: nodeport,
	// and pmtu, which steers the DSR VIP with a kernel route on the routers; the
	// removal pods: etp-local-withdrawal), and ipv4-free, whose probes go to the DSR
	// backend's SNAT VIP and to a port of the world host no check counts.
	withPolicies = 2
	// withPods: pod-connectivity (the applications' echo pods to each other and to
	// the world host, each exchange counted from its sender only), hubble-flows (a
	// removal-echo pod to the world host, and a default-deny policy on the
	// removal-echo pods), etp-local (the DSR backend's Local and SNAT Services, steered
	// through the routers) and vip-reachability (the client to the echo VIPs, judged
	// at the client by VIP), where pod-connectivity stands.
	withPods = 3
)

// The groups of controls that break the lab and run together (Check.ControlGroup).
const (
	// disjointBreaks: pod-connectivity (ingress denied to the second application's
	// pods; its probes from the first's), dns (CoreDNS's ingress denied; its queries,
	// from the echo pods to port 53, are the only DNS of the suite), gua-egress (a pod
	// of the first application from the second's pool: one backend more behind the
	// first's echo VIP, which vip-reachability's restore waits out; its control probes
	// the first application's pods to the world host's probe port, judged by the
	// first's pool, which hubble-flows' pod is in), hubble-flows
	// (a removal-echo pod's UDP to the probe port dropped at the world host's router),
	// pmtu (large packets to the DSR VIP dropped at the client's
	// router), vip-reachability (the first application's echo VIP without backends,
	// probed from the client), ipv4-free (IPv4 on the client's link; its probes to
	// another port of the world host and to the DSR backend's SNAT VIP).
	disjointBreaks = 1
)

// Checks are the suite's checks, in the order they run: the ones whose controls
// disturb the lab most come last.
func Checks() []Check {
	// upgrade-disruption first: in an upgrade stage the rest judge the new release.
	return []Check{upgradeDisruption(), podConnectivity(), dns(), clusterIP(), nodePort(), sessionAffinity(), maglevConsistency(), backendRemoval(), etpLocalWithdrawal(), pmtu(), networkPolicy(), hubbleFlows(), bgpRoutes(), etpLocal(), bfdSessions(), guaEgress(), vipReachability(), l2Announcement(), dsrReturnPath(), ipv4Free(), failover(), l2Failover(), noMasquerade(), noUnexpectedDrops()}
}

// Control says what a check's negative control does.
func (c Check) Control() string {
	if c.Variant != "" {
		return c.Variant
	}
	return c.Breakage
}

func always(*Lab) string { return "" }

// allOf applies where each of fs does (the first reason it does not, otherwise).
func allOf(fs ...func(*Lab) string) func(*Lab) string {
	return func(x *Lab) string {
		for _, f := range fs {
			if why := f(x); why != "" {
				return why
			}
		}
		return ""
	}
}

// podsEgressAsThemselves says why pod egress checks do not apply in tunnel mode.
func podsEgressAsThemselves(x *Lab) string {
	if x.Lab.Spec.Spec.Datapath == spec.DatapathTunnel {
		return "tunnel mode masquerades pod egress to the node address by design (the seed's trade-off): pods do not egress with their GUA"
	}
	return ""
}

func suffix(control bool) string {
	if control {
		return "-control"
	}
	return ""
}

// settle polls a state check (routes, BFD: they converge after a change) until it gives
// the verdict the lab settles on — a pass, or for a control a failure — for at most 30 s.
func settle(ctx context.Context, x *Lab, control bool, once func(context.Context, *Lab) (Result, error)) (Result, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := once(ctx, x)
		if err != nil || r.Pass != control || time.Now().After(deadline) {
			return r, err
		}
		time.Sleep(time.Second)
	}
}

// restored waits, for at most a minute, until a state check passes again after a
// control restored the lab.
func restored(ctx context.Context, x *Lab, what string, once func(context.Context, *Lab) (Result, error)) error {
	if r, err := untilPass(ctx, x, time.Minute, once); err != nil || !r.Pass {
		return fmt.Errorf("%s not back a minute after the restore: %s (%v)", what, r.Reason, err)
	}
	return nil
}

// untilPass polls a state check, a second apart, until it passes, within has gone by
// or ctx ends; it returns the last verdict.
func untilPass(ctx context.Context, x *Lab, within time.Duration, once func(context.Context, *Lab) (Result, error)) (Result, error) {
	deadline := time.Now().Add(within)
	for {
		r, err := once(ctx, x)
		if (err == nil && r.Pass) || time.Now().After(deadline) || ctx.Err() != nil {
			return r, err
		}
		time.Sleep(time.Second)
	}
}
