package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"v6lab.dev/v6lab/labs/plan"
)

// XDP attach modes as the kernel reports them (IFLA_XDP_ATTACHED).
var xdpModes = map[int]string{0: "none", 1: "native", 2: "generic", 3: "offload", 4: "multi"}

// xdpLink is what `ip -j -d link show` says of a link's XDP program.
type xdpLink struct {
	Ifname string `json:"ifname"`
	XDP    *struct {
		Mode int `json:"mode"`
		Prog *struct {
			Name string `json:"name"`
		} `json:"prog"`
	} `json:"xdp"`
}

// XDPAttach is how a link has an XDP program: the kernel's attach mode ("native",
// "generic", "none", ...) and the program's name.
type XDPAttach struct{ Mode, Prog string }

func (a XDPAttach) String() string {
	if a.Prog == "" {
		return a.Mode
	}
	return a.Mode + " " + a.Prog
}

// parseXDP reads one link's XDP mode and program from `ip -j -d link show dev X`.
func parseXDP(out string) (mode, prog string, err error) {
	var links []xdpLink
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		return "", "", fmt.Errorf("ip -j link: %w", err)
	}
	if len(links) != 1 {
		return "", "", fmt.Errorf("ip -j link: %d links", len(links))
	}
	x := links[0].XDP
	if x == nil {
		return "none", "", nil
	}
	mode = xdpModes[x.Mode]
	if mode == "" {
		mode = fmt.Sprintf("mode %d", x.Mode)
	}
	if x.Prog != nil {
		prog = x.Prog.Name
	}
	return mode, prog, nil
}

// XDPModes reads, from each Kubernetes node's kernel, how an XDP program is attached to
// its data link (eth1: what Cilium's loadBalancer.acceleration attaches to): "native",
// "generic", "none", ... with the program's name. It is what ran, not what was asked.
func XDPModes(ctx context.Context, p *plan.Plan) (map[string]XDPAttach, error) {
	out := map[string]XDPAttach{}
	for _, n := range p.KubeNodes {
		text, err := docker(ctx, 30*time.Second, "exec", p.ContainerName(n.Name), "ip", "-j", "-d", "link", "show", "dev", "eth1")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		mode, prog, err := parseXDP(text)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		out[n.Name] = XDPAttach{mode, prog}
	}
	return out, nil
}

// XDPSummary is XDPModes in one line: "native on 3 of 3 nodes: cil_xdp_entry" or
// each node's mode where they differ.
func XDPSummary(modes map[string]XDPAttach) string {
	byMode := map[XDPAttach][]string{}
	for n, m := range modes {
		byMode[m] = append(byMode[m], n)
	}
	if len(byMode) == 1 {
		for m := range byMode {
			s := fmt.Sprintf("%s on %d of %d nodes", m.Mode, len(modes), len(modes))
			if m.Prog != "" {
				s += ": " + m.Prog
			}
			return s
		}
	}
	var parts []string
	for m, ns := range byMode {
		sort.Strings(ns)
		parts = append(parts, strings.Join(ns, ",")+": "+m.String())
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// VethXDPMaxMTU: veth takes a single-buffer XDP program (Cilium's) only up to this MTU with 4 KiB pages
// (a page less XDP's headroom, the skb's shared info and the Ethernet header); measured
// on this project's machine: 3506 attaches, 3507 is refused.
const VethXDPMaxMTU = 3506

// waitXDP waits until every node's data link has Cilium's XDP program attached
// (loadBalancer.acceleration asked for it), and says why not where an agent could not
// attach it (xdpRefused).
func waitXDP(ctx context.Context, p *plan.Plan, kubeconfig string, timeout time.Duration) (map[string]XDPAttach, error) {
	c, err := Client(kubeconfig)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		modes, err := XDPModes(ctx, p)
		if err != nil {
			return nil, err
		}
		attached := 0
		for _, m := range modes {
			if m.Mode != "none" {
				attached++
			}
		}
		if attached == len(modes) {
			return modes, nil
		}
		if err := xdpRefused(ctx, c, p.Spec.LinkMTU); err != nil {
			return modes, err
		}
		if time.Now().After(deadline) {
			return modes, fmt.Errorf("XDP not attached on every node after %s: %s", timeout, XDPSummary(modes))
		}
		select {
		case <-ctx.Done():
			return modes, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// xdpRefused says why, if an agent exited because it could not attach its XDP
// program (loadBalancer.acceleration; the fatal line of its previous container's log);
// nil otherwise.
func xdpRefused(ctx context.Context, c kubernetes.Interface, linkMTU int) error {
	pods, err := c.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=cilium"})
	if err != nil {
		return nil
	}
	for _, pod := range pods.Items {
		for _, st := range pod.Status.ContainerStatuses {
			if st.Name != "cilium-agent" || st.LastTerminationState.Terminated == nil {
				continue
			}
			// The exited agent's log (its termination message can miss the last line).
			tail := int64(60)
			raw, err := c.CoreV1().Pods("kube-system").GetLogs(pod.Name, &corev1.PodLogOptions{
				Container: "cilium-agent", Previous: true, TailLines: &tail}).DoRaw(ctx)
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(raw), "\n") {
				if !strings.Contains(line, "XDP") || !strings.Contains(line, "level=fatal") {
					continue
				}
				why := fmt.Sprintf("Cilium's agent on %s could not attach its XDP program to eth1 and exits: %s", pod.Spec.NodeName, fatalError(line))
				if strings.Contains(line, "numerical result out of range") {
					why += fmt.Sprintf(" (the kernel refuses native XDP on a veth whose MTU is over %d with 4 KiB pages; the lab's links are %d: spec.linkMTU %d or less runs with it, acceleration: disabled without)", VethXDPMaxMTU, linkMTU, VethXDPMaxMTU)
				}
				return errors.New(why)
			}
		}
	}
	return nil
}

// fatalError is the error="..." of a Cilium log line (the line if it has none).
func fatalError(line string) string {
	if _, e, ok := strings.Cut(line, ` error="`); ok {
		if msg, _, ok := strings.Cut(e, `"`); ok {
			return msg
		}
	}
	return strings.TrimSpace(line)
}
