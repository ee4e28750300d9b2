package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/util/wait"
	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/hubble"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/reports"
)

// Cilium network policies, one at a time, each shown on the wire allowing what it
// allows and dropping the rest: an ingress rule with namespace and label selectors
// and an L4 port; egress rules to a CIDR and to the entities world, host and
// remote-node; and, under a default-deny policy, NDP still resolving the pod's
// gateway. A probe is allowed when its answer comes back to the sender's veth; it is
// dropped when the sender's veth shows it leaving the pod and nothing answers (and,
// for an egress rule, it never shows on the sender's node uplink). One capture holds
// every step; each probe is judged in its own window. Variant: the same allow rules
// with enableDefaultDeny off, so they no longer drop what they do not allow.
func networkPolicy() Check {
	return Check{
		Name:         "network-policy",
		Concurrent:   withPolicies,
		Applies:      always,
		Variant:      "the same allow rules with enableDefaultDeny false for ingress and egress: they allow, and no longer drop the rest",
		Expect:       kindNotDropped,
		PassDrops:    []string{reasonPolicyDenied},
		ControlDrops: []string{reasonPolicyDenied},
		Run:          runNetworkPolicy,
	}
}

// Failure kinds of network-policy.
const (
	kindNotDropped = "not-dropped" // a probe a policy does not allow was answered, or left the node
	kindNotAllowed = "not-allowed" // a probe a policy allows was not answered
	kindNDPBroken  = "ndp-broken"  // under default deny, the pod's neighbor solicitation went unanswered
)

// policyProbe is one probe of a step: from a pod to an address, UDP (the probe's
// port) or TCP, and whether the step's policy allows it.
type policyProbe struct {
	what       string
	from       Pod
	to         netip.AddrPort
	tcp        bool
	allowed    bool
	egress     bool // the step is an egress rule: a dropped probe must not leave the node
	start, end time.Time
}

// policyStep is one policy and its probes.
type policyStep struct {
	name, ns string
	// policy names the CiliumNetworkPolicy: consecutive steps that share it replace
	// its rules in place (one policy change realized per step, not a removal and an
	// apply).
	policy string
	rule   map[string]any // the CiliumNetworkPolicy's spec, without enableDefaultDeny
	egress bool
	probes []policyProbe
}

// kubeletPort answers TCP on every node's addresses (the kubelet): a probe of host
// and remote-node rules.
const kubeletPort = 10250

func runNetworkPolicy(ctx context.Context, x *Lab, control bool) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	a, b := x.Plan.Apps[0].Namespace, x.Plan.Apps[1].Namespace
	aPods, err := x.Pods(ctx, a, EchoName)
	if err != nil {
		return r, err
	}
	bPods, err := x.Pods(ctx, b, EchoName)
	if err != nil {
		return r, err
	}
	removal, err := x.Pods(ctx, a, RemovalName)
	if err != nil {
		return r, err
	}
	n0, n1 := x.Plan.KubeNodes[0], x.Plan.KubeNodes[1]
	target, aRemote, err1 := onNode(aPods, n0.Name), onNode(aPods, n1.Name), error(nil)
	bLocal, bRemote := onNode(bPods, n0.Name), onNode(bPods, n1.Name)
	rRemote := onNode(removal, n1.Name)
	for _, p := range []Pod{target, aRemote, bLocal, bRemote, rRemote} {
		if p.Name == "" {
			err1 = fmt.Errorf("network-policy needs an echo pod of each application and a %s pod on %s and %s", RemovalName, n0.Name, n1.Name)
		}
	}
	if err1 != nil {
		return r, err1
	}
	world := x.Plan.HostByRole("world").Address
	client := x.Plan.HostByRole("client").Address
	udp := func(addr netip.Addr) netip.AddrPort { return netip.AddrPortFrom(addr, ProbePort) }
	kubelet := func(addr netip.Addr) netip.AddrPort { return netip.AddrPortFrom(addr, kubeletPort) }
	egressTo := func(name string, to map[string]any, probes ...policyProbe) policyStep {
		for i := range probes {
			probes[i].egress = true
		}
		return policyStep{name: name, ns: b, policy: "egress", egress: true, probes: probes,
			rule: map[string]any{"endpointSelector": matchLabels(map[string]string{"app": EchoName}), "egress": []any{to}}}
	}
	steps := []policyStep{
		{name: "ingress-selectors-l4", ns: a, policy: "ingress", probes: []policyProbe{
			{what: "namespace selector: " + b + "'s echo → UDP", from: bRemote, to: udp(target.IP), allowed: true},
			{what: "label selector: " + a + "'s echo → UDP", from: aRemote, to: udp(target.IP), allowed: true},
			{what: "L4: " + b + "'s echo → TCP, a port the rule leaves out", from: bRemote, to: netip.AddrPortFrom(target.IP, podHTTP), tcp: true},
			{what: "label selector: " + a + "'s " + RemovalName + " → UDP", from: rRemote, to: udp(target.IP)},
		}, rule: map[string]any{
			"endpointSelector": matchLabels(map[string]string{"app": EchoName}),
			"ingress": []any{map[string]any{
				"fromEndpoints": []any{
					matchLabels(map[string]string{"k8s:io.kubernetes.pod.namespace": b, "app": EchoName}),
					matchLabels(map[string]string{"app": EchoName}),
				},
				"toPorts": []any{map[string]any{"ports": []any{map[string]any{"port": fmt.Sprint(ProbePort), "protocol": "UDP"}}}},
			}},
		}},
		egressTo("egress-cidr", map[string]any{"toCIDR": []any{netip.PrefixFrom(world, 128).String()},
			"toPorts": []any{map[string]any{"ports": []any{map[string]any{"port": fmt.Sprint(ProbePort), "protocol": "UDP"}}}}},
			policyProbe{what: "CIDR: → the world host", from: bLocal, to: udp(world), allowed: true},
			policyProbe{what: "CIDR: → the client, outside the CIDR", from: bLocal, to: udp(client)}),
		egressTo("egress-world", map[string]any{"toEntities": []any{"world"}},
			policyProbe{what: "entity world: → the world host", from: bLocal, to: udp(world), allowed: true},
			policyProbe{what: "entity world: → a pod (cluster)", from: bLocal, to: udp(aRemote.IP)}),
		egressTo("egress-host", map[string]any{"toEntities": []any{"host"}},
			policyProbe{what: "entity host: → its own node", from: bLocal, to: kubelet(n0.Address), tcp: true, allowed: true},
			policyProbe{what: "entity host: → another node", from: bLocal, to: kubelet(n1.Address), tcp: true}),
		egressTo("egress-remote-node", map[string]any{"toEntities": []any{"remote-node"}},
			policyProbe{what: "entity remote-node: → another node", from: bLocal, to: kubelet(n1.Address), tcp: true, allowed: true},
			policyProbe{what: "entity remote-node: → its own node", from: bLocal, to: kubelet(n0.Address), tcp: true}),
	}
	ifaces, err := x.PodIfaces(ctx)
	if err != nil {
		return r, err
	}
	points := []string{x.HostLink("world")}
	seen := map[string]bool{}
	add := func(pt string) {
		if !seen[pt] {
			seen[pt] = true
			points = append(points, pt)
		}
	}
	for _, p := range []Pod{target, aRemote, bLocal, bRemote, rRemote} {
		pt, err := podVeth(ifaces, p)
		if err != nil {
			return r, err
		}
		add(pt)
		add(x.Uplink(p.Node))
	}
	var ndpFrom, ndpTo time.Time
	caps, err := x.Capture(ctx, "netpol"+suffix(control), capture.Filter{IPv6Only: true}, points, func() (err error) {
		// The policy in place is removed when the next step does not replace it (the
		// same policy name in the same namespace), and on any exit.
		var remove func(context.Context) error
		defer func() {
			if remove != nil {
				if rerr := remove(ctx); err == nil && rerr != nil {
					err = fmt.Errorf("network-policy's policy not removed: %w", rerr)
				}
			}
		}()
		for i, s := range steps {
			restore, err := x.policyStep(ctx, &steps[i], control)
			if restore != nil { // nil: nothing applied, what was in place stays
				remove = restore
			}
			if err != nil {
				return err
			}
			if i+1 < len(steps) && steps[i+1].ns == s.ns && steps[i+1].policy == s.policy {
				continue
			}
			rm := remove
			remove = nil // reported below, not tried again on the way out
			if err := rm(ctx); err != nil {
				return fmt.Errorf("policy of step %s not removed: %w", s.name, err)
			}
		}
		ndpFrom, ndpTo, err = x.ndpUnderDefaultDeny(ctx, bLocal, udp(world))
		return err
	}, silentOK(points...))
	if err != nil {
		return r, err
	}
	r.pcaps(caps)
	var wire []hubble.Probe
	for _, s := range steps {
		for _, p := range s.probes {
			veth, _ := podVeth(ifaces, p.from)
			var far Captured
			if pt, ok := ifaces[p.to.Addr()]; ok {
				far = caps[pt]
			} else if p.to.Addr() == world {
				far = caps[x.HostLink("world")]
			}
			sent, through, left := judgePolicyProbe(s.name, p, caps[veth], caps[x.Uplink(p.from.Node)], far, &r)
			if far.File == "" && p.egress {
				// No capture at the far end (the client) and nothing answers there:
				// leaving the node is as far as the wire follows an egress probe, and
				// as far as Cilium's verdict reaches.
				through += left
			}
			proto := "UDP"
			if p.tcp {
				proto = "TCP"
			}
			wire = append(wire, hubble.Probe{What: s.name + ", " + p.what, Src: p.from.IP, Dst: p.to, Proto: proto,
				Start: p.start, End: p.end, Sent: sent, Delivered: through})
		}
	}
	veth, _ := podVeth(ifaces, bLocal)
	judgeNDP(bLocal, caps[veth], ndpFrom, ndpTo, world, &r)
	// Hubble's account of every probe, from every agent (an ingress probe is dropped
	// on the target's node), set against the wire: recorded for the report, not
	// judged here (hubble-flows judges Hubble).
	if _, _, err := x.recordHubble(ctx, &r, wire, nil); err != nil {
		return r, err
	}
	return r, nil
}

// onNode is the pod of pods on node (zero: none).
func onNode(pods []Pod, node string) Pod {
	for _, p := range pods {
		if p.Node == node {
			return p
		}
	}
	return Pod{}
}

func matchLabels(l map[string]string) map[string]any {
	return map[string]any{"matchLabels": l}
}

// policyStep applies a step's policy (the control: with enableDefaultDeny off) — a
// policy of the same name in place is replaced — waits until every agent realized it
// on the pods involved, and runs its probes. restore deletes the policy, waiting until
// the deletion is realized too (nil: nothing was applied).
func (x *Lab) policyStep(ctx context.Context, s *policyStep, control bool) (restore func(context.Context) error, err error) {
	name := "v6lab-netpol-" + s.policy
	spec := map[string]any{}
	for k, v := range s.rule {
		spec[k] = v
	}
	if control {
		spec["enableDefaultDeny"] = map[string]any{"ingress": false, "egress": false}
	}
	var pods []Pod
	for _, p := range s.probes {
		pods = append(pods, p.from)
		if !s.egress {
			pods = append(pods, Pod{IP: p.to.Addr()})
		}
	}
	restore, err = x.applyCNP(ctx, s.ns, name, spec, pods)
	if err != nil {
		return restore, fmt.Errorf("policy %s (%s): %w", name, s.name, err)
	}
	return restore, x.policyProbes(ctx, s)
}

// policyProbes runs a step's probes.
func (x *Lab) policyProbes(ctx context.Context, s *policyStep) error {
	// The step's probes run at once: each has a sender, destination and protocol of its
	// own in the step, by which its packets are told apart in overlapping windows.
	var g errgroup.Group
	for i := range s.probes {
		p := &s.probes[i]
		g.Go(func() error {
			p.start = time.Now()
			var err error
			if p.tcp {
				_, err = x.PodProbeHTTP(ctx, p.from, p.to, 1, time.Second)
			} else {
				_, err = x.PodProbeUDP(ctx, p.from, p.to, "--count", "3", "--interval", "10ms", "--wait", "300ms")
			}
			if err != nil && !p.tcp {
				return err
			}
			// A TCP probe to the kubelet fails at the HTTP level (it speaks TLS), and a
			// dropped one times out: the wire judges the handshake.
			p.end = time.Now()
			return nil
		})
	}
	return g.Wait()
}

// policyRevisions reads, for each pod (by address), the policy revision its endpoint
// has realized.
func (x *Lab) policyRevisions(ctx context.Context, pods []Pod) (map[netip.Addr]int64, error) {
	byNode, err := x.agentEndpoints(ctx)
	if err != nil {
		return nil, err
	}
	revs := map[netip.Addr]int64{}
	for _, eps := range byNode {
		for _, ep := range eps {
			for _, a := range ep.Status.Networking.Addressing {
				if ip, err := netip.ParseAddr(a.IPv6); err == nil {
					revs[ip] = ep.Status.Policy.Realized.Revision
				}
			}
		}
	}
	out := map[netip.Addr]int64{}
	for _, p := range pods {
		rev, ok := revs[p.IP]
		if !ok {
			return nil, fmt.Errorf("no agent has an endpoint for %s (%s)", p.Name, p.IP)
		}
		out[p.IP] = rev
	}
	return out, nil
}

// waitPolicyRealized waits, at most a minute, until every pod's endpoint has realized
// a later policy revision than before: the policy change is in its datapath.
func (x *Lab) waitPolicyRealized(ctx context.Context, pods []Pod, before map[netip.Addr]int64) error {
	var last map[netip.Addr]int64
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		if last, err = x.policyRevisions(ctx, pods); err != nil {
			return false, nil
		}
		for ip, rev := range before {
			if last[ip] <= rev {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("endpoints did not realize the policy change within a minute: revisions %v, before %v", last, before)
	}
	return nil
}

// ndpUnderDefaultDeny puts the pod under a default-deny policy (ingress and egress),
// empties its neighbor cache (from its node, in its network namespace) and has it
// send to dst: its kernel must first resolve its gateway. It returns the probe's
// window; the policy is removed on any exit.
func (x *Lab) ndpUnderDefaultDeny(ctx context.Context, p Pod, dst netip.AddrPort) (from, to time.Time, err error) {
	restore, err := x.denyAll(ctx, p.Namespace, EchoName, "v6lab-netpol-default-deny", []Pod{p})
	if restore != nil {
		defer func() {
			if rerr := restore(ctx); err == nil && rerr != nil {
				err = rerr
			}
		}()
	}
	if err != nil {
		return from, to, err
	}
	from = time.Now()
	script := fmt.Sprintf(`for pid in $(pgrep -f 'v6lab-probe serve'); do
  if nsenter -t "$pid" -n ip -6 -o addr show dev eth0 | grep -q ' %s/'; then
    exec nsenter -t "$pid" -n ip -6 neigh flush dev eth0
  fi
done
echo "no process of %s on this node" >&2; exit 1`, p.IP, p.IP)
	if _, err := x.Exec(ctx, p.Node, "sh", "-c", script); err != nil {
		return from, to, fmt.Errorf("flushing %s's neighbors: %w", p.Name, err)
	}
	if _, err := x.PodProbeUDP(ctx, p, dst, "--count", "3", "--interval", "10ms", "--wait", "300ms"); err != nil {
		return from, to, err
	}
	return from, time.Now(), nil
}

// denyAll applies a CiliumNetworkPolicy that allows nothing in or out of ns's pods of
// app (applyCNP).
func (x *Lab) denyAll(ctx context.Context, ns, app, name string, pods []Pod) (restore func(context.Context) error, err error) {
	return x.applyCNP(ctx, ns, name, map[string]any{"endpointSelector": matchLabels(map[string]string{"app": app}),
		"ingress": []any{map[string]any{}}, "egress": []any{map[string]any{}}}, pods)
}

// applyCNP applies a CiliumNetworkPolicy (kubectl apply) and waits until the pods'
// endpoints realized it; restore deletes it and waits the same way. restore is nil
// only when nothing was applied.
func (x *Lab) applyCNP(ctx context.Context, ns, name string, spec map[string]any, pods []Pod) (restore func(context.Context) error, err error) {
	cnp := map[string]any{"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
		"metadata": map[string]any{"name": name, "namespace": ns}, "spec": spec}
	doc, err := json.Marshal(cnp)
	if err != nil {
		return nil, err
	}
	before, err := x.policyRevisions(ctx, pods)
	if err != nil {
		return nil, err
	}
	if _, err := x.kubectl(ctx, string(doc), "apply", "-f", "-"); err != nil {
		return nil, err
	}
	restore = func(ctx context.Context) error {
		at, err := x.policyRevisions(ctx, pods)
		if err != nil {
			return err
		}
		if _, err := x.kubectl(ctx, "", "-n", ns, "delete", "ciliumnetworkpolicy", name, "--ignore-not-found"); err != nil {
			return err
		}
		return x.waitPolicyRealized(ctx, pods, at)
	}
	return restore, x.waitPolicyRealized(ctx, pods, before)
}

// judgePolicyProbe judges one probe in its window: sent (on the sender's veth), and
// let through or not. Let through: it arrived at the far end (far: the target pod's
// veth, or the world host's link) or an answer shows wherever it can — leaving the
// target pod, crossing the sender's node uplink, reaching the sender's veth (a packet
// from outside the node enters the pod without crossing its veth's capture). A dropped
// egress probe must not show on the sender's node uplink either.
func judgePolicyProbe(step string, p policyProbe, veth, uplink, far Captured, r *Result) (sent, through, left int) {
	in := func(q *verdict.Packet) bool { return !q.Time.Before(p.start) && !q.Time.After(p.end) }
	sports := map[uint16]bool{} // the sender's source ports, from its veth
	answer := func(q *verdict.Packet) bool {
		// To the pod, or, masqueraded (tunnel mode: to another node's address), to its
		// node's address on the same port.
		if q.Src != p.to.Addr() || q.SrcPort != p.to.Port() || (q.Dst != p.from.IP && !sports[q.DstPort]) {
			return false
		}
		// UDP: a probe reply; TCP: the SYN-ACK (the handshake is what a policy lets
		// through or not).
		return (!p.tcp && q.Probe != nil && q.Probe.Reply) || (p.tcp && q.TCPFlags&verdict.TCPSyn != 0 && q.TCPFlags&verdict.TCPAck != 0)
	}
	answered := 0
	var first *verdict.Packet
	var firstFile string
	for _, c := range []Captured{veth, uplink, far} {
		for i := range c.Packets {
			q := c.Packets[i].Sent()
			if !q.IPv6 || !in(&c.Packets[i]) {
				continue
			}
			switch {
			case c.File == veth.File && q.Src == p.from.IP && q.Dst == p.to.Addr() && q.DstPort == p.to.Port():
				sent++
				sports[q.SrcPort] = true
			case c.File == uplink.File && q.Dst == p.to.Addr() && q.DstPort == p.to.Port() && q.Proto != layers.IPProtocolICMPv6 &&
				(q.Src == p.from.IP || sports[q.SrcPort]):
				// The sender's (or, masqueraded, from its source ports): the node's own
				// traffic to the same address and port crosses the same uplink (the API
				// server's connections to a kubelet, for another check's kubectl exec).
				left++
			case c.File == far.File && q.Dst == p.to.Addr() && q.DstPort == p.to.Port() && q.Proto != layers.IPProtocolICMPv6 &&
				(q.Src == p.from.IP || p.egress):
				// Arrived: from the sender (the probes of a step run at once, several
				// to one pod), or, out of the cluster, from its node (tunnel mode
				// masquerades; a step's egress probes each go somewhere else).
				answered++
				if first == nil {
					first, firstFile = &c.Packets[i], c.File
				}
			case answer(q):
				answered++
				if first == nil {
					first, firstFile = &c.Packets[i], c.File
				}
			}
		}
	}
	proto := "udp"
	if p.tcp {
		proto = "tcp"
	}
	verdictOf := "dropped"
	switch {
	case sent == 0:
		r.fail(kindNothingSeen, "%s, %s: no probe from %s on its veth", step, p.what, p.from.Name)
		verdictOf = "not seen"
	case p.allowed && answered == 0:
		r.fail(kindNotAllowed, "%s, %s: %d probes from %s to %s/%s, none got through, although the policy allows them", step, p.what, sent, p.from.Name, p.to, proto)
	case p.allowed:
		verdictOf = "allowed"
	case answered > 0:
		r.fail(kindNotDropped, "%s, %s: %s to %s/%s got through (%d packets at the far end or answers), although the policy does not allow it", step, p.what, p.from.Name, p.to, proto, answered)
		verdictOf = "got through"
	case p.egress && left > 0:
		r.fail(kindNotDropped, "%s, %s: %d probes from %s to %s/%s left its node, although the policy does not allow them", step, p.what, left, p.from.Name, p.to, proto)
		verdictOf = "left the node"
	}
	ev := reports.Evidence{File: veth.File, Note: fmt.Sprintf("%s, %s (%s %s → %s/%s): %s; %d sent, %d through (at the far end or answers), %d on %s's uplink",
		step, p.what, map[bool]string{true: "allowed", false: "not allowed"}[p.allowed], p.from.Name, p.to, proto, verdictOf, sent, answered, left, p.from.Node)}
	if first != nil {
		ev.File, ev.Frame, ev.Time, ev.Src, ev.Dst = firstFile, first.Index, first.Time, first.Src.String(), first.Dst.String()
	}
	r.Evidence = append(r.Evidence, ev)
	if verdictOf == "allowed" || verdictOf == "dropped" {
		r.figure("probes_as_policy", r.Figures["probes_as_policy"]+1)
	}
	r.figure("probes", r.Figures["probes"]+1)
	return sent, answered, left
}

// judgeNDP judges the pod's neighbor discovery under default deny: after its cache
// was emptied it solicited its gateway, was answered, and then sent its probes
// (which the policy drops).
func judgeNDP(p Pod, veth Captured, from, to time.Time, dst netip.Addr, r *Result) {
	ns, na, sentAfter := 0, 0, 0
	var firstNA *verdict.Packet
	for i := range veth.Packets {
		q := &veth.Packets[i]
		if !q.IPv6 || q.Time.Before(from) || q.Time.After(to) {
			continue
		}
		switch {
		case q.Proto == layers.IPProtocolICMPv6 && q.ICMPv6.Type() == layers.ICMPv6TypeNeighborSolicitation && (q.Src == p.IP || q.Src.IsLinkLocalUnicast()):
			ns++
		case q.Proto == layers.IPProtocolICMPv6 && q.ICMPv6.Type() == layers.ICMPv6TypeNeighborAdvertisement && (q.Dst == p.IP || q.Dst.IsLinkLocalUnicast() || q.Dst.IsMulticast()):
			na++
			if firstNA == nil {
				firstNA = q
			}
		case q.Src == p.IP && q.Dst == dst && q.DstPort == ProbePort && firstNA != nil:
			sentAfter++
		}
	}
	switch {
	case ns == 0:
		r.fail(kindNothingSeen, "default deny: after its neighbor cache was emptied, %s sent no neighbor solicitation", p.Name)
	case na == 0 || sentAfter == 0:
		r.fail(kindNDPBroken, "default deny: %s solicited its gateway %d times, %d advertisements came back, %d probes left after one", p.Name, ns, na, sentAfter)
	}
	ev := reports.Evidence{File: veth.File, Note: fmt.Sprintf("default deny on %s: %d neighbor solicitations, %d advertisements, then %d probes sent (dropped by the policy)", p.Name, ns, na, sentAfter)}
	if firstNA != nil {
		ev.Frame, ev.Time, ev.Src, ev.Dst = firstNA.Index, firstNA.Time, firstNA.Src.String(), firstNA.Dst.String()
	}
	r.Evidence = append(r.Evidence, ev)
	r.figure("ndp_solicitations", float64(ns))
	r.figure("ndp_advertisements", float64(na))
}
