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
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"v6lab.dev/v6lab/labs/faults"
	"v6lab.dev/v6lab/labs/frr"
	"v6lab.dev/v6lab/labs/lab"
	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/runtime"
	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/labs/xexec"
	"v6lab.dev/v6lab/reports"
)

// Ports the echo workload serves (v6lab-probe serve) and its Services expose.
const (
	ProbePort  = 9000 // UDP probes (answered with the source the responder saw)
	HTTPPort   = 80   // Service port for HTTP (the pods serve 8080)
	TCPPort    = 9001 // TCP echo (long-lived connections)
	podHTTP    = 8080
	healthPort = 8081 // readiness (removal-echo pods: v6lab-probe serve --health)
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
	// UpgradeTo is the Cilium release the upgrade-disruption check moves the lab to
	// ("": no upgrade in this run); Runtime the options it runs the upgrade with.
	UpgradeTo string
	Runtime   runtime.Options

	mu       sync.Mutex
	report   reports.Report
	captures []reports.Capture // since the last TakeCaptures
	drops    dropLedger
	metallb  metallbLedger
}

// Open connects to a running lab.
func Open(l *lab.Lab, o runtime.Options, runDir, kubectl, hostImage string) (*Lab, error) {
	kc := o.Kubeconfig(l.Plan.Lab)
	c, err := runtime.Client(kc)
	if err != nil {
		return nil, err
	}
	s := l.Spec.Spec
	x := &Lab{Lab: l, Plan: l.Plan, Kubeconfig: kc, Client: c, Kubectl: kubectl, RunDir: runDir, HostImage: hostImage, Runtime: o}
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
	// XDP as the nodes' kernels show it on their data link (what ran, not what the
	// spec asked: loadBalancer.acceleration).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if modes, err := runtime.XDPModes(ctx, l.Plan); err == nil {
		x.report.Labels["xdp"] = xdpLabel(s.LoadBalancer.Acceleration, s.LinkMTU, modes)
	} else {
		x.report.Labels["xdp"] = "unknown: " + err.Error()
	}
	var tree strings.Builder
	if err := l.Plan.WriteTree(&tree); err == nil {
		x.report.Plan = tree.String()
	}
	return x, nil
}

// xdpLabel is the report's xdp label: what the spec asked, then what the nodes run,
// and, where the spec left XDP off on links the kernel would refuse it on (veth,
// over VethXDPMaxMTU), why it could not run.
func xdpLabel(asked spec.Acceleration, linkMTU int, modes map[string]runtime.XDPAttach) string {
	if asked == "" {
		asked = spec.AccelerationDisabled
	}
	s := fmt.Sprintf("acceleration %s; %s", asked, runtime.XDPSummary(modes))
	if asked == spec.AccelerationDisabled && linkMTU > runtime.VethXDPMaxMTU {
		s += fmt.Sprintf(" (native XDP cannot run on this lab's %d-byte veth links: the kernel takes it up to %d with 4 KiB pages; embedded:xdp runs it on 3500-byte links)", linkMTU, runtime.VethXDPMaxMTU)
	}
	return s
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

func planRole(role string) spec.HostRole { return spec.HostRole(role) }
