package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/labs/verdict"
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
}

// Checks are the suite's checks, in the order they run: the ones whose controls
// disturb the lab most come last.
func Checks() []Check {
	return []Check{podConnectivity(), bgpRoutes(), etpLocal(), bfdSessions(), guaEgress(), vipReachability(), dsrReturnPath(), ipv4Free(), failover(), noMasquerade()}
}

// Control says what a check's negative control does.
func (c Check) Control() string {
	if c.Variant != "" {
		return c.Variant
	}
	return c.Breakage
}

func always(*Lab) string { return "" }

// podsEgressAsThemselves says why pod egress checks do not apply in tunnel mode.
func podsEgressAsThemselves(x *Lab) string {
	if x.Lab.Spec.Spec.Datapath == spec.DatapathTunnel {
		return "tunnel mode masquerades pod egress to the node address by design (the seed's trade-off): pods do not egress with their GUA"
	}
	return ""
}

// worldAndUplinks are the capture points of pod egress: the world host's link, then
// every node's uplink.
func (x *Lab) worldAndUplinks() []string {
	points := []string{x.HostLink("world")}
	for _, n := range x.Plan.KubeNodes {
		points = append(points, x.Uplink(n.Name))
	}
	return points
}

// podsToWorld has every pod send probes to the world host while capturing the probes at
// the given points; it returns the captures and each pod's probe summary.
func (x *Lab) podsToWorld(ctx context.Context, check string, pods []Pod, points []string) (map[string]Captured, map[Pod]ProbeSummary, error) {
	world := x.Plan.HostByRole("world")
	sums := map[Pod]ProbeSummary{}
	caps, err := x.Capture(ctx, check, capture.Filter{Proto: "udp", Port: ProbePort}, points, func() error {
		for _, p := range pods {
			out, err := x.PodExec(ctx, p, "v6lab-probe", "send", "--to", netip.AddrPortFrom(world.Address, ProbePort).String(),
				"--count", "10", "--interval", "10ms", "--wait", "300ms")
			if err != nil {
				return err
			}
			var s ProbeSummary
			if err := decodeJSON(out, &s); err != nil {
				return err
			}
			sums[p] = s
		}
		return nil
	})
	return caps, sums, err
}

func suffix(control bool) string {
	if control {
		return "-control"
	}
	return ""
}

func waitPods(ctx context.Context, x *Lab, ns, app string, n int) error {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		pods, err := x.Pods(ctx, ns, app)
		if err == nil && len(pods) == n {
			list, err := x.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
			if err == nil && len(list.Items) == n {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d pods of %s running, want %d (%v)", ns, len(pods), app, n, err)
		}
		time.Sleep(time.Second)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
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
	deadline := time.Now().Add(time.Minute)
	for {
		r, err := once(ctx, x)
		if err == nil && r.Pass {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not back a minute after the restore: %s (%v)", what, r.Reason, err)
		}
		time.Sleep(time.Second)
	}
}

func hasHop(hops []string, a netip.Addr) bool {
	for _, h := range hops {
		h, _, _ = strings.Cut(h, "%")
		if ha, err := netip.ParseAddr(h); err == nil && ha == a {
			return true
		}
	}
	return false
}

// stripServerFields turns `kubectl get -o json` output into a document kubectl apply
// can create again.
func stripServerFields(doc string) string {
	var list struct {
		APIVersion string           `json:"apiVersion"`
		Kind       string           `json:"kind"`
		Items      []map[string]any `json:"items"`
	}
	if json.Unmarshal([]byte(doc), &list) != nil {
		return doc
	}
	for _, it := range list.Items {
		if md, ok := it["metadata"].(map[string]any); ok {
			for _, k := range []string{"resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"} {
				delete(md, k)
			}
		}
		delete(it, "status")
	}
	out, err := json.Marshal(list)
	if err != nil {
		return doc
	}
	return string(out)
}

// announcer is the address a node announces VIPs from: its node-ip (Cilium's BGP), or
// its speaker address (MetalLB).
func (x *Lab) announcer(node string) netip.Addr {
	for _, n := range x.Plan.KubeNodes {
		if n.Name == node {
			if x.Lab.Spec.Spec.LoadBalancer.Announcer == spec.AnnouncerMetalLB {
				return n.SpeakerAddress
			}
			return n.Address
		}
	}
	return netip.Addr{}
}

func (x *Lab) node(name string) *kubeNode {
	for _, n := range x.Plan.KubeNodes {
		if n.Name == name {
			return &kubeNode{Name: n.Name, Router: n.Router, RouterIface: n.RouterIface, RouterASN: n.RouterASN,
				Address: n.Address, Announcer: x.announcer(n.Name)}
		}
	}
	return nil
}

// kubeNode is what a fault needs of a node.
type kubeNode struct {
	Name, Router, RouterIface string
	RouterASN                 uint32
	Address                   netip.Addr
	Announcer                 netip.Addr // the address the VIPs are announced from
	vip                       netip.Addr
}

// returnPathKind is the kind of a failed return-path verdict: replies seen outside the
// backend's node, or captures that cannot show the path at all.
func returnPathKind(v verdict.ReturnPathVerdict) string {
	if v.Reason == verdict.ReasonRepliesElsewhere {
		return kindReplyOnEntryNode
	}
	return kindReturnPathUnproven
}
