package conformance

// Helpers several checks share: capture points, pod probes, exchanges on the wire,
// the nodes a failure acts on.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/hubble"
	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/labs/verdict"
)

// exchange counts, among packets captured in [from, to], the probe requests toward dst
// and the replies from it (the pods' own packets: inside VXLAN where tunnelled).
func exchange(pkts []verdict.Packet, dst netip.AddrPort, from, to time.Time) (requests, replies int) {
	return exchangeOf(pkts, nil, dst, from, to)
}

// exchangeOf is exchange for one sender's probes: requests from one of srcs, replies to
// one of them (a pod's address, and its node's where the node masquerades its egress);
// nil srcs: any sender's.
func exchangeOf(pkts []verdict.Packet, srcs []netip.Addr, dst netip.AddrPort, from, to time.Time) (requests, replies int) {
	for i := range pkts {
		if pkts[i].Time.Before(from) || pkts[i].Time.After(to) {
			continue
		}
		p := pkts[i].Sent()
		if !p.IPv6 || p.Probe == nil {
			continue
		}
		switch {
		case !p.Probe.Reply && p.Dst == dst.Addr() && p.DstPort == dst.Port() && (srcs == nil || slices.Contains(srcs, p.Src)):
			requests++
		case p.Probe.Reply && p.Src == dst.Addr() && p.SrcPort == dst.Port() && (srcs == nil || slices.Contains(srcs, p.Dst)):
			replies++
		}
	}
	return requests, replies
}

// withAddr is the packets to or from a.
func withAddr(pkts []verdict.Packet, a netip.Addr) []verdict.Packet {
	var out []verdict.Packet
	for i := range pkts {
		if pkts[i].Src == a || pkts[i].Dst == a {
			out = append(out, pkts[i])
		}
	}
	return out
}

// tcpExchange counts, among packets captured in [from, to] (as their senders sent
// them), the client's TCP segments toward dst and dst's segments back to it.
func tcpExchange(pkts []verdict.Packet, client netip.Addr, dst netip.AddrPort, from, to time.Time) (requests, replies int) {
	for i := range pkts {
		if pkts[i].Time.Before(from) || pkts[i].Time.After(to) {
			continue
		}
		p := pkts[i].Sent()
		if !p.IPv6 || p.Proto != layers.IPProtocolTCP {
			continue
		}
		switch {
		case p.Src == client && p.Dst == dst.Addr() && p.DstPort == dst.Port():
			requests++
		case p.Dst == client && p.Src == dst.Addr() && p.SrcPort == dst.Port():
			replies++
		}
	}
	return requests, replies
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
	var mu sync.Mutex
	caps, err := x.Capture(ctx, check, capture.Filter{Proto: "udp", Port: ProbePort}, points, func() error {
		// Every pod at once: each its own sender and summary (the verdicts count the
		// window's packets together).
		var g errgroup.Group
		for _, p := range pods {
			g.Go(func() error {
				out, err := x.PodExec(ctx, p, "v6lab-probe", "send", "--to", netip.AddrPortFrom(world.Address, ProbePort).String(),
					"--count", "10", "--interval", "10ms", "--wait", "300ms")
				if err != nil {
					return err
				}
				var s ProbeSummary
				if err := decodeJSON(out, &s); err != nil {
					return err
				}
				mu.Lock()
				sums[p] = s
				mu.Unlock()
				return nil
			})
		}
		return g.Wait()
	})
	return caps, sums, err
}

// worldProbes are the wire's accounts of each pod's probes to the world host
// (podsToWorld, captured at worldAndUplinks), for Hubble's (recordHubble): sent, the
// pod's probes on its node's uplink, from its own address; delivered, those at the
// world host.
func (x *Lab) worldProbes(app string, pods []Pod, caps map[string]Captured, start, end time.Time) []hubble.Probe {
	world := x.Plan.HostByRole("world")
	to := netip.AddrPortFrom(world.Address, ProbePort)
	var out []hubble.Probe
	for _, p := range pods {
		pm := verdict.Match{Proto: "udp", Src: p.IP, Dst: world.Address, DstPort: ProbePort}
		out = append(out, hubble.Probe{What: app + ": pod " + p.Name + " → world host", Src: p.IP, Dst: to, Proto: "UDP",
			Start: start, End: end,
			Sent:      verdict.Source(caps[x.Uplink(p.Node)].Packets, pm, nil).Matched,
			Delivered: verdict.Source(caps[x.HostLink("world")].Packets, pm, nil).Matched})
	}
	return out
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
