package conformance

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	probewire "v6lab.dev/v6lab/fixtures/probe/wire"
	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/hubble"
	"v6lab.dev/v6lab/labs/render/kube"
	"v6lab.dev/v6lab/labs/verdict"
)

// Service-to-service over DNS, as the seed's applications find each other: from a pod
// of each application, through the nameserver its resolv.conf names (the kubelet's
// clusterDNS), a Service's name resolves to its ClusterIP (AAAA, in its own namespace
// and in the other's, over UDP and TCP), an A query gets no address, and a headless
// Service's name resolves to its pods' GUAs; every query and its answer is seen on the
// querying pod's veth, exchanged with a CoreDNS pod. The control denies every ingress
// to the CoreDNS pods by policy, in effect on their endpoints: no query is answered.
func dns() Check {
	return Check{
		Name:         "dns",
		Concurrent:   withServices,
		ControlGroup: disjointBreaks,
		Applies:      always,
		Breakage:     "a NetworkPolicy denies every ingress to the CoreDNS pods (UDP and TCP 53), in effect in their agents",
		Expect:       kindNoAnswer,
		ControlDrops: []string{reasonPolicyDenied},
		Break: func(ctx context.Context, x *Lab) (func(context.Context) error, error) {
			return x.denyIngress(ctx, "kube-system", "v6lab-deny-dns", kube.DNSLabels)
		},
		Run: runDNS,
	}
}

// Failure kinds of the dns check.
const (
	kindNoAnswer    = "no-answer"    // a query got no answer
	kindWrongAnswer = "wrong-answer" // an answer other than the Service's address(es)
	kindResolvConf  = "resolv-conf"  // the pod's nameserver is not the cluster DNS
	kindDNSNotSeen  = "dns-not-seen" // the wire does not show the exchange with a CoreDNS pod
)

// dnsParallel is how many queries run at once (each a kubectl exec).
const dnsParallel = 4

// dnsQuery is one query of the check and the addresses it must get ([]: none).
type dnsQuery struct {
	from Pod
	name string
	typ  string
	tcp  bool
	want []string
}

func runDNS(ctx context.Context, x *Lab, control bool) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	dnsPods, err := x.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
	if err != nil {
		return r, err
	}
	servers := map[netip.Addr]bool{}
	for _, p := range dnsPods.Items {
		if a, err := netip.ParseAddr(p.Status.PodIP); err == nil && p.Status.Phase == "Running" {
			servers[a] = true
		}
	}
	if len(servers) == 0 {
		return r, fmt.Errorf("no CoreDNS pod runs (kube-system, k8s-app=kube-dns)")
	}
	queries, err := dnsQueries(ctx, x)
	if err != nil {
		return r, err
	}
	if control {
		// Unanswered queries each wait out their timeout: per application one over
		// UDP and one over TCP show the denial (all ten took 26 s a lab).
		var some []dnsQuery
		for _, q := range queries {
			if q.typ == "AAAA" && q.name == "echo."+q.from.Namespace+".svc.cluster.local" {
				some = append(some, q)
			}
		}
		queries = some
	}
	ifaces, err := x.PodIfaces(ctx)
	if err != nil {
		return r, err
	}
	// A veth shows what its pod sends (Cilium delivers to a pod past its veth): the
	// queries on the querying pods' veths, the answers on the CoreDNS pods'.
	var points, serverPoints []string
	queriers := map[netip.Addr]*dnsQuerier{}
	for _, q := range queries {
		w := queriers[q.from.IP]
		if w == nil {
			pt, err := podVeth(ifaces, q.from)
			if err != nil {
				return r, err
			}
			points = append(points, pt)
			w = &dnsQuerier{from: q.from, point: pt}
			queriers[q.from.IP] = w
		}
		if p := q.proto(); !slices.Contains(w.protos, p) {
			w.protos = append(w.protos, p)
		}
	}
	for a := range servers {
		pt, ok := ifaces[a]
		if !ok {
			return r, fmt.Errorf("no agent knows the veth of the CoreDNS pod %s", a)
		}
		serverPoints = append(serverPoints, pt)
	}
	answered := 0
	// A CoreDNS pod the queries' hash did not pick may see nothing.
	caps, err := x.Capture(ctx, "dns"+suffix(control), capture.Filter{IPv6Only: true}, append(append([]string{}, points...), serverPoints...), func() error {
		// The queries run together (an unanswered one waits out its timeout): the wire
		// tells them apart by querier and transport, each answer is judged in the
		// queries' order.
		sums, errs := make([]probewire.DNSSummary, len(queries)), make([]error, len(queries))
		start := time.Now()
		var g errgroup.Group
		g.SetLimit(dnsParallel)
		for i, q := range queries {
			g.Go(func() error {
				args := []string{"v6lab-probe", "dns", "--name", q.name, "--type", q.typ, "--timeout", "2s"}
				if q.tcp {
					args = append(args, "--tcp")
				}
				out, perr := x.PodExec(ctx, q.from, args...)
				if err := decodeJSON(out, &sums[i]); err != nil {
					errs[i] = fmt.Errorf("dns from %s: %w (%v)", q.from.Name, err, perr)
				}
				return nil
			})
		}
		_ = g.Wait()
		end := time.Now()
		for i, q := range queries {
			if errs[i] != nil {
				return errs[i]
			}
			w := queriers[q.from.IP]
			w.start, w.end = start, end
			judgeAnswer(x, q, sums[i], &r)
			if sums[i].RCode != "" {
				answered++
			}
		}
		return nil
	}, silentOK(serverPoints...))
	if err != nil {
		return r, err
	}
	r.pcaps(caps)
	countDNS(queriers, servers, x.Plan.ClusterDNS, caps, serverPoints)
	for _, w := range queriers {
		pt, q, a := w.point, w.queries, w.answers
		r.figure("wire_queries_"+pt, float64(q))
		r.figure("wire_answers_"+pt, float64(a))
		if q == 0 {
			r.fail(kindDNSNotSeen, "%s: no query to the cluster DNS on the wire", pt)
		}
		if !control && a < q {
			r.fail(kindDNSNotSeen, "%s: %d queries to the cluster DNS on the wire, %d answers from a CoreDNS pod (%v)", pt, q, a, slices.Collect(maps.Keys(servers)))
		}
	}
	r.figure("queries", float64(len(queries)))
	r.figure("answered", float64(answered))
	// Hubble's account of each pod's queries beside the wire's: recorded, not judged
	// (the control's denied queries must be Hubble's policy drops, or the report
	// lists a disagreement).
	if _, _, err := x.recordHubble(ctx, &r, dnsProbes(queriers, servers, x.Plan.ClusterDNS), nil); err != nil {
		return r, err
	}
	return r, nil
}

// proto is the query's transport, as Hubble names it.
func (q dnsQuery) proto() string {
	if q.tcp {
		return "TCP"
	}
	return "UDP"
}

// dnsQuerier is one querying pod: its veth, when its queries ran and over which
// transports, and what the wire showed of them (countDNS).
type dnsQuerier struct {
	from       Pod
	point      string
	protos     []string
	start, end time.Time
	// queries and answers: the packets carrying one (a TCP segment with payload).
	queries, answers int
	// sent and delivered, by transport: every packet of the exchange (a TCP
	// handshake too: a denied TCP query sends only SYNs).
	sent, delivered map[string]int
}

// countDNS counts, on the wire, each querying pod's packets to port 53 of a CoreDNS pod
// or of the cluster DNS address itself (translated after the veth) on its own veth,
// and the CoreDNS pods' packets back to it on theirs.
func countDNS(queriers map[netip.Addr]*dnsQuerier, servers map[netip.Addr]bool, clusterDNS netip.Addr,
	caps map[string]Captured, serverPoints []string) {
	carries := func(p *verdict.Packet) bool { return p.Proto != layers.IPProtocolTCP || p.Payload > 0 }
	for ip, w := range queriers {
		w.sent, w.delivered = map[string]int{}, map[string]int{}
		for i := range caps[w.point].Packets {
			p := &caps[w.point].Packets[i]
			if p.IPv6 && p.Src == ip && p.DstPort == 53 && (servers[p.Dst] || p.Dst == clusterDNS) {
				w.sent[p.Proto.String()]++
				if carries(p) {
					w.queries++
				}
			}
		}
	}
	for _, pt := range serverPoints {
		for i := range caps[pt].Packets {
			p := &caps[pt].Packets[i]
			if w := queriers[p.Dst]; w != nil && p.IPv6 && p.SrcPort == 53 && servers[p.Src] {
				w.delivered[p.Proto.String()]++
				if carries(p) {
					w.answers++
				}
			}
		}
	}
}

// dnsProbes are the wire's accounts of each pod's queries (countDNS), one per
// transport, for Hubble's (recordHubble). Hubble reports the queries past socket LB's
// translation, to a CoreDNS pod.
func dnsProbes(queriers map[netip.Addr]*dnsQuerier, servers map[netip.Addr]bool, clusterDNS netip.Addr) []hubble.Probe {
	var backends []netip.AddrPort
	for a := range servers {
		backends = append(backends, netip.AddrPortFrom(a, 53))
	}
	slices.SortFunc(backends, func(a, b netip.AddrPort) int { return a.Compare(b) })
	var out []hubble.Probe
	for ip, w := range queriers {
		for _, proto := range w.protos {
			out = append(out, hubble.Probe{What: w.from.Namespace + ": pod " + w.from.Name + " → cluster DNS, " + proto, Src: ip,
				Dst: netip.AddrPortFrom(clusterDNS, 53), Proto: proto, Start: w.start, End: w.end, Replies: true, Backends: backends,
				Sent: w.sent[proto], Delivered: w.delivered[proto]})
		}
	}
	slices.SortFunc(out, func(a, b hubble.Probe) int { return strings.Compare(a.What, b.What) })
	return out
}

// dnsQueries are the check's queries from one echo pod of each application.
func dnsQueries(ctx context.Context, x *Lab) ([]dnsQuery, error) {
	fqdn := func(svc, ns string) string { return svc + "." + ns + ".svc.cluster.local" }
	var out []dnsQuery
	for i, app := range x.Plan.Apps {
		pods, err := x.Pods(ctx, app.Namespace, EchoName)
		if err != nil || len(pods) == 0 {
			return nil, fmt.Errorf("%s: no echo pod to query from (%v)", app.Namespace, err)
		}
		from := pods[0]
		other := x.Plan.Apps[(i+1)%len(x.Plan.Apps)].Namespace
		own, err := x.Client.CoreV1().Services(app.Namespace).Get(ctx, EchoName, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		theirs, err := x.Client.CoreV1().Services(other).Get(ctx, EchoName, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		var podIPs []string
		for _, p := range pods {
			podIPs = append(podIPs, p.IP.String())
		}
		slices.Sort(podIPs)
		out = append(out,
			dnsQuery{from: from, name: fqdn(EchoName, app.Namespace), typ: "AAAA", want: []string{own.Spec.ClusterIP}},
			dnsQuery{from: from, name: fqdn(EchoName, other), typ: "AAAA", want: []string{theirs.Spec.ClusterIP}},
			dnsQuery{from: from, name: fqdn(EchoName, app.Namespace), typ: "AAAA", tcp: true, want: []string{own.Spec.ClusterIP}},
			dnsQuery{from: from, name: fqdn(EchoName, app.Namespace), typ: "A", want: []string{}},
			dnsQuery{from: from, name: fqdn(Headless, app.Namespace), typ: "AAAA", want: podIPs})
	}
	return out, nil
}

// judgeAnswer judges one query's answer into r.
func judgeAnswer(x *Lab, q dnsQuery, s probewire.DNSSummary, r *Result) {
	proto := "udp"
	if q.tcp {
		proto = "tcp"
	}
	what := fmt.Sprintf("%s %s (%s) from %s", q.typ, q.name, proto, q.from.Name)
	if want := net.JoinHostPort(x.Plan.ClusterDNS.String(), "53"); s.Server != want {
		r.fail(kindResolvConf, "%s: the pod's nameserver is %s, not the cluster DNS %s", what, s.Server, want)
	}
	switch {
	case s.RCode == "":
		r.fail(kindNoAnswer, "%s: no answer (%s)", what, s.Error)
	case s.RCode != "Success":
		r.fail(kindWrongAnswer, "%s: %s", what, s.RCode)
	case !slices.Equal(s.Answers, q.want):
		r.fail(kindWrongAnswer, "%s: answered %v, want %v", what, s.Answers, q.want)
	}
}
