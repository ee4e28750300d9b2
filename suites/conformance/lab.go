// Package conformance is v6lab's conformance suite: features (sigs.k8s.io/e2e-framework)
// whose assessments prove, from packet captures on the lab's links, what the seed designs
// promise: pods egress with their GUA, nothing is masqueraded, VIPs answer from outside,
// DSR replies leave the backend's node, failover converges. Every check runs twice: on
// the lab as it is, where it must pass, and on the lab broken on purpose (its negative
// control), where it must fail. Verdicts, figures and the pcapng evidence go into a run
// directory (reports: report.json, junit.xml, report.html, pcap/).
//
// This file is the suite's view of a running lab: members, pods, captures, the report.
package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	probewire "v6lab.dev/v6lab/fixtures/probe/wire"
	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/faults"
	"v6lab.dev/v6lab/labs/frr"
	"v6lab.dev/v6lab/labs/lab"
	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/runtime"
	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/labs/xexec"
	"v6lab.dev/v6lab/reports"
)

// Ports the echo workload serves (v6lab-probe serve) and its Services expose.
const (
	ProbePort = 9000 // UDP probes (answered with the source the responder saw)
	HTTPPort  = 80   // Service port for HTTP (the pods serve 8080)
	TCPPort   = 9001 // TCP echo (long-lived connections)
	podHTTP   = 8080
)

// Lab is a running lab as the suite sees it.
type Lab struct {
	Lab        *lab.Lab
	Plan       *plan.Plan
	Kubeconfig string
	Client     *kubernetes.Clientset
	Kubectl    string
	RunDir     string // the run directory: report files and pcap/
	HostImage  string // the image of the echo workload

	mu       sync.Mutex
	report   reports.Report
	captures []reports.Capture // since the last TakeCaptures
}

// Open connects to a running lab.
func Open(l *lab.Lab, o runtime.Options, runDir, kubectl, hostImage string) (*Lab, error) {
	kc := o.Kubeconfig(l.Plan.Lab)
	c, err := runtime.Client(kc)
	if err != nil {
		return nil, err
	}
	s := l.Spec.Spec
	x := &Lab{Lab: l, Plan: l.Plan, Kubeconfig: kc, Client: c, Kubectl: kubectl, RunDir: runDir, HostImage: hostImage}
	x.report = reports.Report{
		Lab: l.Plan.Lab,
		Labels: map[string]string{
			"datapath":   string(s.Datapath),
			"lb":         string(s.LoadBalancer.Announcer),
			"lbMode":     string(s.LoadBalancer.Mode),
			"cilium":     s.Versions.Cilium,
			"kubernetes": s.Versions.Kubernetes.Version,
		},
		StartedAt: time.Now().UTC(),
		Topology:  topology(l.Plan),
	}
	var tree strings.Builder
	if err := l.Plan.WriteTree(&tree); err == nil {
		x.report.Plan = tree.String()
	}
	return x, nil
}

func topology(p *plan.Plan) *reports.Topology {
	t := &reports.Topology{}
	for _, r := range p.Routers {
		t.Members = append(t.Members, reports.Member{Name: r.Name, Kind: "router", Addr: r.Loopback.String()})
	}
	for _, n := range p.KubeNodes {
		t.Members = append(t.Members, reports.Member{Name: n.Name, Kind: "node", Addr: n.Address.String()})
	}
	for _, h := range p.Hosts {
		t.Members = append(t.Members, reports.Member{Name: h.Name, Kind: "host", Addr: h.Address.String()})
	}
	for _, l := range p.Links {
		t.Links = append(t.Links, [2]string{l.A.Node, l.B.Node})
	}
	return t
}

// Record adds (or replaces) a check's verdict in the report.
func (x *Lab) Record(c reports.Check) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := range x.report.Checks {
		if x.report.Checks[i].Name == c.Name {
			x.report.Checks[i] = c
			return
		}
	}
	x.report.Checks = append(x.report.Checks, c)
}

// WriteReport writes the run directory's report files and returns the report.
func (x *Lab) WriteReport() (*reports.Report, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.report.FinishedAt = time.Now().UTC()
	r := x.report
	return &r, r.Write(x.RunDir)
}

// Exec runs a command in a lab member's container.
func (x *Lab) Exec(ctx context.Context, member string, args ...string) (string, error) {
	return run(ctx, "docker", append([]string{"exec", x.Plan.ContainerName(member)}, args...), "")
}

// ExecStdin runs a command in a lab member's container with stdin.
func (x *Lab) ExecStdin(ctx context.Context, member, stdin string, args ...string) (string, error) {
	return run(ctx, "docker", append([]string{"exec", "-i", x.Plan.ContainerName(member)}, args...), stdin)
}

// PodExec runs a command in a pod.
func (x *Lab) PodExec(ctx context.Context, p Pod, args ...string) (string, error) {
	return x.kubectl(ctx, "", append([]string{"-n", p.Namespace, "exec", p.Name, "--"}, args...)...)
}

// kubectl runs kubectl against the lab's cluster, with stdin ("": none).
func (x *Lab) kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	return run(ctx, x.Kubectl, append([]string{"--kubeconfig", x.Kubeconfig}, args...), stdin)
}

// run runs a command (stdin "": none) under a two-minute timeout that kills its whole
// process group (xexec).
func run(ctx context.Context, name string, args []string, stdin string) (string, error) {
	c := xexec.Cmd{Name: name, Args: args, Timeout: 2 * time.Minute}
	if stdin != "" {
		c.Stdin = strings.NewReader(stdin)
	}
	out, err := xexec.Run(ctx, c)
	if err != nil {
		return out, fmt.Errorf("%s: %w", filepath.Base(name), err)
	}
	return out, nil
}

// ProbeSummary is what `v6lab-probe send` prints (its wire type).
type ProbeSummary = probewire.SendSummary

// HTTPSummary is what `v6lab-probe http` prints.
type HTTPSummary = probewire.HTTPSummary

// ProbeHTTP runs `v6lab-probe http` from a lab member against http://[vip]:HTTPPort/.
// Failed requests make the probe exit non-zero: its summary is the verdict, so only a
// run without one is an error.
func (x *Lab) ProbeHTTP(ctx context.Context, member string, vip netip.Addr, count int) (HTTPSummary, error) {
	var hs HTTPSummary
	out, err := x.Exec(ctx, member, "v6lab-probe", "http", "--url", fmt.Sprintf("http://[%s]:%d/", vip, HTTPPort),
		"--count", fmt.Sprint(count), "--timeout", "2s")
	if jerr := decodeJSON(out, &hs); jerr != nil {
		return hs, fmt.Errorf("http: %w (%v)", jerr, err)
	}
	return hs, nil
}

// ProbeUDP runs `v6lab-probe send --to to` from a lab member with the given options
// (--count, --interval, --wait, --duration); like ProbeHTTP, lost probes are in the
// summary, not an error.
func (x *Lab) ProbeUDP(ctx context.Context, member string, to netip.AddrPort, opts ...string) (ProbeSummary, error) {
	var ps ProbeSummary
	out, err := x.Exec(ctx, member, append([]string{"v6lab-probe", "send", "--to", to.String()}, opts...)...)
	if jerr := decodeJSON(out, &ps); jerr != nil {
		return ps, fmt.Errorf("send: %w (%v)", jerr, err)
	}
	return ps, nil
}

// TCPSummary is what `v6lab-probe tcp` prints.
type TCPSummary = probewire.TCPSummary

// ProbeTCP runs `v6lab-probe tcp --to to` from a lab member (--conns, --interval,
// --duration); a failed connection is in the summary (the wire judges it), not an error.
func (x *Lab) ProbeTCP(ctx context.Context, member string, to netip.AddrPort, opts ...string) (TCPSummary, error) {
	var ts TCPSummary
	out, err := x.Exec(ctx, member, append([]string{"v6lab-probe", "tcp", "--to", to.String()}, opts...)...)
	if jerr := decodeJSON(out, &ts); jerr != nil {
		return ts, fmt.Errorf("tcp: %w (%v)", jerr, err)
	}
	return ts, nil
}

// Faults is what the faults of labs/faults act through in this lab.
func (x *Lab) Faults() faults.Env {
	return faults.Env{
		Exec: func(ctx context.Context, member, stdin string, args ...string) (string, error) {
			if stdin != "" {
				return x.ExecStdin(ctx, member, stdin, args...)
			}
			return x.Exec(ctx, member, args...)
		},
		Docker:    func(ctx context.Context, args ...string) (string, error) { return run(ctx, "docker", args, "") },
		Container: x.Plan.ContainerName,
		Router:    func(member string) frr.Router { return runtime.Router(x.Plan, member) },
	}
}

func decodeJSON(out string, v any) error {
	i := strings.Index(out, "{")
	if i < 0 {
		return fmt.Errorf("no JSON in %q", out)
	}
	return json.Unmarshal([]byte(out[i:]), v)
}

// Pod is a running pod of the suite's workload.
type Pod struct {
	Name, Namespace, Node string
	IP                    netip.Addr
}

// Workload names.
const (
	EchoName = "echo"      // every application: one echo pod per node, a LoadBalancer Service
	DSRName  = "dsr-echo"  // first application: one backend pinned to one node
	DSRSvc   = "dsr"       // its Service in the lab's LB mode
	SNATSvc  = "dsr-snat"  // the same backend, SNAT forwarding (the DSR check's control)
	LocalSvc = "dsr-local" // the same backend, externalTrafficPolicy Local
)

func labels(app string) map[string]string { return map[string]string{"app": app} }

func (x *Lab) echoDeployment(ns, name string, replicas int32, node string) *appsv1.Deployment {
	spec := corev1.PodSpec{
		Containers: []corev1.Container{{Name: "echo", Image: x.HostImage, ImagePullPolicy: corev1.PullIfNotPresent,
			Command: []string{"v6lab-probe", "serve", "--udp", fmt.Sprintf(":%d", ProbePort), "--http", fmt.Sprintf(":%d", podHTTP),
				"--tcp", fmt.Sprintf(":%d", TCPPort)}}},
		TerminationGracePeriodSeconds: ptr.To(int64(1)),
	}
	if node != "" {
		spec.NodeSelector = map[string]string{"kubernetes.io/hostname": node}
	} else {
		spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1,
			TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.DoNotSchedule,
			LabelSelector: &metav1.LabelSelector{MatchLabels: labels(name)}}}
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels(name)},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels(name)}, Spec: spec},
		},
	}
}

// LBService is a LoadBalancer Service for an app's pods; annotations may pick a mode.
func LBService(ns, name, app string, annotations map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeLoadBalancer,
			IPFamilies:            []corev1.IPFamily{corev1.IPv6Protocol},
			Selector:              labels(app),
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster,
			Ports: []corev1.ServicePort{
				{Name: "udp", Port: ProbePort, Protocol: corev1.ProtocolUDP},
				{Name: "http", Port: HTTPPort, Protocol: corev1.ProtocolTCP, TargetPort: intstrPort(podHTTP)},
				{Name: "tcp", Port: TCPPort, Protocol: corev1.ProtocolTCP},
			},
		},
	}
}

func localService(s *corev1.Service) *corev1.Service {
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	return s
}

// DSRNode is the node that holds the DSR check's only backend: the last node, so that
// connections also enter through the others.
func (x *Lab) DSRNode() string { return x.Plan.KubeNodes[len(x.Plan.KubeNodes)-1].Name }

// Deploy creates the suite's workload (idempotent) and waits until its pods run and
// its Services have VIPs.
func (x *Lab) Deploy(ctx context.Context) error {
	for _, app := range x.Plan.Apps {
		if err := x.apply(ctx, x.echoDeployment(app.Namespace, EchoName, int32(len(x.Plan.KubeNodes)), ""),
			LBService(app.Namespace, EchoName, EchoName, nil)); err != nil {
			return err
		}
	}
	first := x.Plan.Apps[0].Namespace
	if err := x.apply(ctx, x.echoDeployment(first, DSRName, 1, x.DSRNode()),
		LBService(first, DSRSvc, DSRName, nil),
		LBService(first, SNATSvc, DSRName, map[string]string{"service.cilium.io/forwarding-mode": "snat"}),
		localService(LBService(first, LocalSvc, DSRName, nil))); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		why := ""
		for _, app := range x.Plan.Apps {
			pods, err := x.Pods(ctx, app.Namespace, EchoName)
			if err != nil {
				return err
			}
			if len(pods) != len(x.Plan.KubeNodes) {
				why = fmt.Sprintf("%s: %d of %d echo pods running", app.Namespace, len(pods), len(x.Plan.KubeNodes))
			}
			if _, err := x.VIP(ctx, app.Namespace, EchoName); err != nil {
				why = err.Error()
			}
		}
		if pods, err := x.Pods(ctx, first, DSRName); err != nil || len(pods) != 1 {
			why = fmt.Sprintf("the DSR backend is not running (%v)", err)
		}
		if why == "" {
			return x.WaitDatapath(ctx, time.Until(deadline))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("workload not ready after 5m: %s", why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// WaitDatapath waits until every Cilium agent knows every pod of the workload: each
// pod's address is in every agent's ipcache, the BPF map the datapath looks a
// destination up in (with, in tunnel mode, the node to tunnel to). A pod is Ready as
// soon as its own node has set it up; the other agents learn it from its CiliumEndpoint
// later, and until then their nodes send traffic to it as to the world. A check that
// runs in between fails for the lab's timing, not its design: a tunnel-mode run saw
// one agent's first probes to a fresh pod on another node all lost (pod-connectivity,
// 0 of 5). cilium-cli's connectivity test waits for the ipcache the same way.
func (x *Lab) WaitDatapath(ctx context.Context, timeout time.Duration) error {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		missing, err := x.datapathMissing(ctx)
		if err == nil && len(missing) == 0 {
			slog.Info("every agent knows every pod of the workload", "waited", time.Since(start).Round(100*time.Millisecond))
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("the agents' ipcache after %s: %w", timeout, err)
			}
			return fmt.Errorf("pods still unknown to Cilium agents after %s: %s", timeout.Round(time.Second), strings.Join(missing, "; "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// datapathMissing lists, per agent, the workload's pod addresses its ipcache lacks.
func (x *Lab) datapathMissing(ctx context.Context) ([]string, error) {
	var want []Pod
	for _, app := range x.Plan.Apps {
		list, err := x.Client.CoreV1().Pods(app.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, p := range list.Items {
			if ip, err := netip.ParseAddr(p.Status.PodIP); err == nil && p.DeletionTimestamp == nil {
				want = append(want, Pod{Name: p.Name, Namespace: p.Namespace, Node: p.Spec.NodeName, IP: ip})
			}
		}
	}
	var missing []string
	err := x.eachAgent(ctx, func(node, out string) error {
		known, err := ipcacheKeys(out)
		if err != nil {
			return err
		}
		var lacks []string
		for _, p := range want {
			if !known[netip.PrefixFrom(p.IP, p.IP.BitLen())] {
				lacks = append(lacks, fmt.Sprintf("%s (%s, %s)", p.IP, p.Name, p.Node))
			}
		}
		if len(lacks) > 0 {
			missing = append(missing, fmt.Sprintf("agent on %s lacks %s", node, strings.Join(lacks, ", ")))
		}
		return nil
	}, "bpf", "ipcache", "list")
	return missing, err
}

// ipcacheKeys reads `cilium-dbg bpf ipcache list -o json`: prefix -> entries.
func ipcacheKeys(out string) (map[netip.Prefix]bool, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return nil, fmt.Errorf("cilium-dbg bpf ipcache list: %w", err)
	}
	keys := map[netip.Prefix]bool{}
	for k := range m {
		if p, err := netip.ParsePrefix(k); err == nil {
			keys[p.Masked()] = true
		}
	}
	return keys, nil
}

func (x *Lab) apply(ctx context.Context, d *appsv1.Deployment, svcs ...*corev1.Service) error {
	if _, err := x.Client.AppsV1().Deployments(d.Namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	for _, s := range svcs {
		if _, err := x.Client.CoreV1().Services(s.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("service %s/%s: %w", s.Namespace, s.Name, err)
		}
	}
	return nil
}

// Pods lists the running pods (with an address) of an app label in a namespace.
func (x *Lab) Pods(ctx context.Context, ns, app string) ([]Pod, error) {
	list, err := x.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil, err
	}
	var pods []Pod
	for _, p := range list.Items {
		ready := false
		for _, c := range p.Status.ContainerStatuses {
			ready = ready || c.Ready
		}
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if p.Status.Phase != corev1.PodRunning || err != nil || !ready || p.DeletionTimestamp != nil {
			continue
		}
		pods = append(pods, Pod{Name: p.Name, Namespace: ns, Node: p.Spec.NodeName, IP: ip})
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Node < pods[j].Node })
	return pods, nil
}

// VIP is a LoadBalancer Service's address.
func (x *Lab) VIP(ctx context.Context, ns, name string) (netip.Addr, error) {
	s, err := x.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return netip.Addr{}, err
	}
	for _, i := range s.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(i.IP); err == nil {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("service %s/%s has no VIP yet", ns, name)
}

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
	x.recordCaptures(check, out)
	if len(bad) > 0 {
		return out, fmt.Errorf("%w: %s", ErrEvidenceIncomplete, strings.Join(bad, "; "))
	}
	return out, nil
}

// recordCaptures keeps every capture's sanity figures for the report.
func (x *Lab) recordCaptures(check string, caps map[string]Captured) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, c := range caps {
		x.captures = append(x.captures, reports.Capture{Name: check, Point: c.Point, File: c.File, Packets: len(c.Packets), Drops: int(c.Drops)})
	}
}

// TakeCaptures returns the captures recorded since the last call.
func (x *Lab) TakeCaptures() []reports.Capture {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := x.captures
	x.captures = nil
	sort.Slice(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out
}

// Uplink is a node's capture point toward its router.
func (x *Lab) Uplink(node string) string {
	for _, n := range x.Plan.KubeNodes {
		if n.Name == node {
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

// StartResponder starts the world host's UDP responder (idempotent: a second one fails
// to bind and exits).
func (x *Lab) StartResponder(ctx context.Context) error {
	world := x.Plan.HostByRole("world")
	_, err := run(ctx, "docker", []string{"exec", "-d", x.Plan.ContainerName(world.Name), "v6lab-probe", "serve", "--http", ""}, "")
	time.Sleep(300 * time.Millisecond)
	return err
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

// Cleanup removes everything the suite created in the cluster.
func (x *Lab) Cleanup(ctx context.Context) {
	for _, app := range x.Plan.Apps {
		_ = x.Client.AppsV1().Deployments(app.Namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		for _, n := range []string{EchoName, DSRSvc, SNATSvc, LocalSvc} {
			_ = x.Client.CoreV1().Services(app.Namespace).Delete(ctx, n, metav1.DeleteOptions{})
		}
	}
}

func planRole(role string) spec.HostRole { return spec.HostRole(role) }

func intstrPort(p int) intstr.IntOrString { return intstr.FromInt32(int32(p)) }

// agentEndpoint is what the suite reads of one endpoint in `cilium-dbg endpoint list
// -o json` (Cilium's REST model: api/v1/models Endpoint).
type agentEndpoint struct {
	Status struct {
		// Networking names the endpoint's addresses: how the suite finds a pod's
		// endpoint (Cilium 1.20 leaves external-identifiers' k8s-namespace and
		// k8s-pod-name empty).
		Networking struct {
			Addressing []struct {
				IPv6 string `json:"ipv6"`
			} `json:"addressing"`
			// InterfaceName is the pod's veth on its node (lxc...).
			InterfaceName string `json:"interface-name"`
		} `json:"networking"`
		Policy struct {
			Realized struct {
				Enabled  string `json:"policy-enabled"`
				Revision int64  `json:"policy-revision"`
			} `json:"realized"`
			Spec struct {
				Revision int64 `json:"policy-revision"`
			} `json:"spec"`
		} `json:"policy"`
	} `json:"status"`
}

// parseEndpoints reads `cilium-dbg endpoint list -o json`.
func parseEndpoints(out string) ([]agentEndpoint, error) {
	var eps []agentEndpoint
	if err := json.Unmarshal([]byte(out), &eps); err != nil {
		return nil, fmt.Errorf("cilium-dbg endpoint list: %w", err)
	}
	return eps, nil
}

// ingressEnforcement says, for every running pod of a namespace, whether its endpoint
// has caught up with the agent's policy (realized revision at least the desired one)
// and what ingress enforcement it realized; pods without an endpoint yet are "absent".
func (x *Lab) ingressEnforcement(ctx context.Context, ns string) (map[string]string, error) {
	pods, err := x.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	state := map[string]string{}
	byIP := map[netip.Addr]string{}
	for _, p := range pods.Items {
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && err == nil {
			state[p.Name] = "absent"
			byIP[ip] = p.Name
		}
	}
	byNode, err := x.agentEndpoints(ctx)
	if err != nil {
		return nil, err
	}
	for _, eps := range byNode {
		for _, ep := range eps {
			pod := ""
			for _, a := range ep.Status.Networking.Addressing {
				if ip, err := netip.ParseAddr(a.IPv6); err == nil && byIP[ip] != "" {
					pod = byIP[ip]
				}
			}
			if pod == "" {
				continue
			}
			pol := ep.Status.Policy
			switch {
			case pol.Realized.Revision < pol.Spec.Revision:
				state[pod] = "regenerating"
			case pol.Realized.Enabled == "ingress" || pol.Realized.Enabled == "both":
				state[pod] = "enforced"
			default:
				state[pod] = "not enforced (" + pol.Realized.Enabled + ")"
			}
		}
	}
	return state, nil
}

// WaitIngressEnforcement waits until every pod of a namespace has its endpoint's
// ingress policy enforced (enforced=true) or not (false), as its agent realized it: a
// policy is in effect when the datapath enforces it, not when the API server has it.
func (x *Lab) WaitIngressEnforcement(ctx context.Context, ns string, enforced bool, timeout time.Duration) error {
	var last map[string]string
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		last, lastErr = x.ingressEnforcement(ctx, ns)
		if lastErr != nil || len(last) == 0 {
			return false, nil
		}
		for _, st := range last {
			if (st == "enforced") != enforced || st == "absent" || st == "regenerating" {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		want := "enforced"
		if !enforced {
			want = "lifted"
		}
		return fmt.Errorf("%s: ingress policy not %s on every endpoint within %s: %v (%v)", ns, want, timeout, last, lastErr)
	}
	return nil
}

// agentService is what the suite reads of one entry of `cilium-dbg service list -o
// json` (Cilium's REST model: api/v1/models Service).
type agentService struct {
	Spec struct {
		Frontend struct {
			IP    string `json:"ip"`
			Port  uint16 `json:"port"`
			Scope string `json:"scope"`
		} `json:"frontend-address"`
		Backends []struct {
			IP    *string `json:"ip"`
			State string  `json:"state"`
		} `json:"backend-addresses"`
	} `json:"spec"`
}

// serviceBackends reads `cilium-dbg service list -o json`: the active backends of each
// of the VIP's frontends (one per port and scope: a Service with externalTrafficPolicy
// Local has an external and an internal frontend on the same port), keyed "port/scope".
func serviceBackends(out string, vip netip.Addr) (map[string]int, error) {
	var svcs []agentService
	if err := json.Unmarshal([]byte(out), &svcs); err != nil {
		return nil, fmt.Errorf("cilium-dbg service list: %w", err)
	}
	fronts := map[string]int{}
	for _, s := range svcs {
		if a, err := netip.ParseAddr(s.Spec.Frontend.IP); err != nil || a != vip {
			continue
		}
		n := 0
		for _, b := range s.Spec.Backends {
			if b.IP != nil && (b.State == "" || b.State == "active") {
				n++
			}
		}
		fronts[fmt.Sprintf("%d/%s", s.Spec.Frontend.Port, s.Spec.Frontend.Scope)] = n
	}
	return fronts, nil
}

// WaitServiceBackends waits until every agent's load balancer has want active backends
// behind each of the VIP's frontends (want 0: none, or the VIP gone): a Service change is
// in effect when the datapath has it, not when the API server does.
func (x *Lab) WaitServiceBackends(ctx context.Context, vip netip.Addr, want int, timeout time.Duration) error {
	var last []string
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		last, lastErr = nil, nil
		lastErr = x.eachAgent(ctx, func(node, out string) error {
			ports, err := serviceBackends(out, vip)
			if err != nil {
				return err
			}
			if want > 0 && len(ports) == 0 {
				last = append(last, node+": no frontend")
			}
			for front, n := range ports {
				if n != want {
					last = append(last, fmt.Sprintf("%s: frontend %s has %d backends", node, front, n))
				}
			}
			return nil
		}, "service", "list")
		return lastErr == nil && len(last) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("the agents do not have %d backends behind %s within %s: %v (%v)", want, vip, timeout, last, lastErr)
	}
	return nil
}

// PodIfaces maps each pod address to its capture point on its node: the node-side
// veth Cilium attached it to (member:lxc...), read from every agent's endpoint list.
func (x *Lab) PodIfaces(ctx context.Context) (map[netip.Addr]string, error) {
	byNode, err := x.agentEndpoints(ctx)
	if err != nil {
		return nil, err
	}
	out := map[netip.Addr]string{}
	for node, eps := range byNode {
		for _, ep := range eps {
			for _, ad := range ep.Status.Networking.Addressing {
				if ip, err := netip.ParseAddr(ad.IPv6); err == nil && ep.Status.Networking.InterfaceName != "" {
					out[ip] = node + ":" + ep.Status.Networking.InterfaceName
				}
			}
		}
	}
	return out, nil
}

// eachAgent runs `cilium-dbg ARGS -o json` in every Cilium agent and calls fn with the
// agent's node and the output; the first error (the agent named) ends it.
func (x *Lab) eachAgent(ctx context.Context, fn func(node, out string) error, args ...string) error {
	agents, err := x.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=cilium"})
	if err != nil {
		return err
	}
	if len(agents.Items) == 0 {
		return errors.New("no Cilium agent pods")
	}
	for _, a := range agents.Items {
		out, err := x.kubectl(ctx, "", append([]string{"-n", "kube-system", "exec", a.Name, "-c", "cilium-agent", "--", "cilium-dbg"}, append(args, "-o", "json")...)...)
		if err != nil {
			return err
		}
		if err := fn(a.Spec.NodeName, out); err != nil {
			return fmt.Errorf("agent on %s: %w", a.Spec.NodeName, err)
		}
	}
	return nil
}

// agentEndpoints is every agent's endpoint list, by node.
func (x *Lab) agentEndpoints(ctx context.Context) (map[string][]agentEndpoint, error) {
	byNode := map[string][]agentEndpoint{}
	err := x.eachAgent(ctx, func(node, out string) error {
		eps, err := parseEndpoints(out)
		byNode[node] = eps
		return err
	}, "endpoint", "list")
	return byNode, err
}
