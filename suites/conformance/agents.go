package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"v6lab.dev/v6lab/labs/runtime"
)

// What the suite reads from the Cilium agents (cilium-dbg JSON): the datapath settled,
// policy enforced, Service backends, pod interfaces.

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

// ingressEnforcement says, for every running pod of a namespace that selector selects
// (nil: all; only those a policy selects change: hubble-relay shares kube-system with
// CoreDNS, and a CoreDNS-only policy never reaches it), whether its endpoint
// has caught up with the agent's policy (realized revision at least the desired one)
// and what ingress enforcement it realized; pods without an endpoint yet are "absent".
func (x *Lab) ingressEnforcement(ctx context.Context, ns string, selector map[string]string) (map[string]string, error) {
	pods, err := x.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labelsSelector(selector)})
	if err != nil {
		return nil, err
	}
	state := map[string]string{}
	byIP := map[netip.Addr]string{}
	for _, p := range pods.Items {
		ip, err := netip.ParseAddr(p.Status.PodIP)
		// A pod on the host's network (Cilium's own, in kube-system) has no endpoint.
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && err == nil && !p.Spec.HostNetwork {
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

// denyIngress creates a NetworkPolicy denying all ingress to the pods of ns that
// selector selects (nil: every pod) and waits until every endpoint's agent realized
// it — in effect, never after a fixed sleep (a tunnel-mode CI run ran a control before
// its policy was enforced, and the control passed). restore deletes it and waits until
// it is lifted the same way.
func (x *Lab) denyIngress(ctx context.Context, ns, name string, selector map[string]string) (restore func(context.Context) error, err error) {
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: selector},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}
	restore = func(ctx context.Context) error {
		if err := x.Client.NetworkingV1().NetworkPolicies(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			return err
		}
		return x.WaitIngressEnforcement(ctx, ns, selector, false, 2*time.Minute)
	}
	if _, err := x.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	return restore, x.WaitIngressEnforcement(ctx, ns, selector, true, 2*time.Minute)
}

// WaitIngressEnforcement waits until every pod of a namespace that selector selects
// (nil: all) has its endpoint's
// ingress policy enforced (enforced=true) or not (false), as its agent realized it: a
// policy is in effect when the datapath enforces it, not when the API server has it.
func (x *Lab) WaitIngressEnforcement(ctx context.Context, ns string, selector map[string]string, enforced bool, timeout time.Duration) error {
	var last map[string]string
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		last, lastErr = x.ingressEnforcement(ctx, ns, selector)
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
	return x.inAgents(ctx, nil, fn, append(append([]string{"cilium-dbg"}, args...), "-o", "json")...)
}

// inAgents runs a command in the cilium-agent container of every Cilium agent, or of
// those on nodes when given (each must have one), and calls fn with the agent's node
// and the output, agent after agent; the first error (the agent named) ends it. The
// execs run at once (each a kubectl exec of about a second: the suite's checks wait
// for them often).
func (x *Lab) inAgents(ctx context.Context, nodes []string, fn func(node, out string) error, cmd ...string) error {
	agents, err := x.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=cilium"})
	if err != nil {
		return err
	}
	if len(agents.Items) == 0 {
		return errors.New("no Cilium agent pods")
	}
	var asked []corev1.Pod
	for _, a := range agents.Items {
		if len(nodes) == 0 || slices.Contains(nodes, a.Spec.NodeName) {
			asked = append(asked, a)
		}
	}
	if len(asked) < len(nodes) {
		return fmt.Errorf("no Cilium agent on every one of %v", nodes)
	}
	type answer struct {
		out string
		err error
	}
	answers := make([]answer, len(asked))
	var wg sync.WaitGroup
	for i, a := range asked {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// An exec that hangs (one did, for its whole two minutes, in a dns control's
			// wait for its policy) must not use up its caller's polling: 30 s each.
			actx, cancel := context.WithTimeout(ctx, agentExecTimeout)
			defer cancel()
			answers[i].out, answers[i].err = x.kubectl(actx, "", append([]string{"-n", "kube-system", "exec", a.Name, "-c", "cilium-agent", "--"}, cmd...)...)
		}()
	}
	wg.Wait()
	for i, a := range asked {
		if answers[i].err != nil {
			return answers[i].err
		}
		if err := fn(a.Spec.NodeName, answers[i].out); err != nil {
			return fmt.Errorf("agent on %s: %w", a.Spec.NodeName, err)
		}
	}
	return nil
}

// labelsSelector is a label selector's string form ("" selects everything).
func labelsSelector(m map[string]string) string {
	if len(m) == 0 {
		return "" // FormatLabelSelector would say "<none>", which selects nothing
	}
	return metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: m})
}

// agentExecTimeout bounds one cilium-dbg query of one agent.
const agentExecTimeout = 30 * time.Second

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

// podVeth is a pod's capture point, its veth on its node, from PodIfaces' map.
func podVeth(ifaces map[netip.Addr]string, p Pod) (string, error) {
	if pt, ok := ifaces[p.IP]; ok {
		return pt, nil
	}
	return "", fmt.Errorf("no agent knows the veth of %s (%s)", p.Name, p.IP)
}

// podVeths are the pods' capture points, in the pods' order.
func podVeths(ifaces map[netip.Addr]string, pods []Pod) ([]string, error) {
	var points []string
	for _, p := range pods {
		pt, err := podVeth(ifaces, p)
		if err != nil {
			return nil, err
		}
		points = append(points, pt)
	}
	return points, nil
}

// restartAgents replaces the Cilium agents of the nodes named (every node's when none
// is) at once (their pods deleted together, the DaemonSet creating new ones: a
// configuration change is read at start) and waits until a new agent, none of the old
// pods, runs Ready on every node and the lab is ready again (agents, operator, nodes,
// every BGP session). A rolling restart replaces them one after another: three times
// the wait on the default lab.
func (x *Lab) restartAgents(ctx context.Context, timeout time.Duration, nodes ...string) error {
	sel := metav1.ListOptions{LabelSelector: "k8s-app=cilium"}
	old, err := x.Client.CoreV1().Pods("kube-system").List(ctx, sel)
	if err != nil {
		return err
	}
	gone := map[types.UID]bool{}
	for _, p := range old.Items {
		if len(nodes) > 0 && !slices.Contains(nodes, p.Spec.NodeName) {
			continue
		}
		gone[p.UID] = true
		if err := x.Client.CoreV1().Pods("kube-system").Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("agent %s: %w", p.Name, err)
		}
	}
	var why string
	err = wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		pods, err := x.Client.CoreV1().Pods("kube-system").List(ctx, sel)
		if err != nil {
			why = err.Error()
			return false, nil
		}
		ready := map[string]bool{}
		for _, p := range pods.Items {
			if gone[p.UID] {
				why = "old agent " + p.Name + " still there"
				return false, nil
			}
			if podReady(&p) {
				ready[p.Spec.NodeName] = true
			}
		}
		for _, n := range x.Plan.KubeNodes {
			if !ready[n.Name] {
				why = "no new agent Ready on " + n.Name
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("agents not replaced within %s: %s (%w)", timeout, why, err)
	}
	return runtime.WaitReady(ctx, x.Plan, x.Kubeconfig, timeout)
}
