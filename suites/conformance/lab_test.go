package conformance

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"v6lab.dev/v6lab/labs/faults"
	"v6lab.dev/v6lab/labs/lab"
	"v6lab.dev/v6lab/labs/runtime"
	"v6lab.dev/v6lab/labs/spec"
)

// What `cilium-dbg bpf ipcache list -o json` printed in a tunnel-mode lab (1.20.2).
const ipcacheSample = `{
  "2001:db8:0:a00:1::/80": [
    "identity=2 encryptkey=0 tunnelendpoint=2001:db8:0:1::12 flags=hastunnel,ipv6tunnel"
  ],
  "2001:db8:0:a00:1::89e2/128": [
    "identity=6 encryptkey=0 tunnelendpoint=2001:db8:0:1::12 flags=hastunnel,ipv6tunnel"
  ],
  "::/0": [
    "identity=2 encryptkey=0 tunnelendpoint=0.0.0.0 flags=\u003cnone\u003e"
  ]
}`

func TestIPCacheKeys(t *testing.T) {
	keys, err := ipcacheKeys(ipcacheSample)
	require.NoError(t, err)
	assert.True(t, keys[netip.MustParsePrefix("2001:db8:0:a00:1::89e2/128")], "a pod's own entry")
	// A pod inside a pool slice the agent knows is not yet known as a pod: only its
	// own /128 entry carries its identity.
	assert.False(t, keys[netip.MustParsePrefix("2001:db8:0:a00:1::1/128")])
	assert.Len(t, keys, 3)

	_, err = ipcacheKeys("Error: cannot reach the agent")
	assert.Error(t, err, "output that is not the JSON map is an error, not an empty cache")
}

// What `cilium-dbg endpoint list -o json` printed in the default lab (Cilium 1.20.2),
// trimmed to what the suite reads: endpoints are found by address (external-identifiers
// holds only the CNI attachment there), and the deny-all control is in effect only on
// endpoints whose realized policy enforces ingress and has caught up with the desired
// revision.
func TestParseEndpoints(t *testing.T) {
	out := `[
 {"id": 101, "status": {"external-identifiers": {"cni-attachment-id": "2396d3b5:eth0"},
   "networking": {"addressing": [{"ipv6": "2001:db8:0:a02::216d", "ipv6-pool-name": "app-b"}], "interface-name": "lxcb776e4f9654a"},
   "policy": {"proxy-policy-revision": 1, "realized": {"policy-enabled": "ingress", "policy-revision": 7}, "spec": {"policy-enabled": "ingress", "policy-revision": 7}}}},
 {"id": 102, "status": {"networking": {"addressing": [{"ipv6": "2001:db8:0:a02::1:5"}]},
   "policy": {"realized": {"policy-enabled": "none", "policy-revision": 6}, "spec": {"policy-revision": 7}}}},
 {"id": 7, "status": {"identity": {"labels": ["reserved:health"]}, "external-identifiers": {}}}
]`
	eps, err := parseEndpoints(out)
	require.NoError(t, err)
	require.Len(t, eps, 3)
	assert.Equal(t, "2001:db8:0:a02::216d", eps[0].Status.Networking.Addressing[0].IPv6)
	assert.Equal(t, "ingress", eps[0].Status.Policy.Realized.Enabled)
	assert.Equal(t, int64(6), eps[1].Status.Policy.Realized.Revision)
	assert.Equal(t, int64(7), eps[1].Status.Policy.Spec.Revision)
	assert.Empty(t, eps[2].Status.Networking.Addressing)
	_, err = parseEndpoints("Error: cannot reach the agent")
	assert.Error(t, err)
}

// `cilium-dbg service list -o json` (Cilium's REST model), trimmed: the VIP's
// frontends and their active backends.
func TestServiceBackends(t *testing.T) {
	out := `[
 {"spec": {"id": 4, "frontend-address": {"ip": "2001:db8:0:101::1", "port": 80, "protocol": "TCP", "scope": "internal"},
   "backend-addresses": [{"ip": "2001:db8:0:a01::1", "port": 8080, "state": "active"}]}},
 {"spec": {"id": 1, "frontend-address": {"ip": "2001:db8:0:101::1", "port": 80, "protocol": "TCP", "scope": "external"},
   "backend-addresses": [{"ip": "2001:db8:0:a01::1", "port": 8080, "state": "active"}, {"ip": "2001:db8:0:a01::2", "port": 8080, "state": "terminating"}]}},
 {"spec": {"id": 2, "frontend-address": {"ip": "2001:db8:0:101::1", "port": 9000, "protocol": "UDP"}, "backend-addresses": []}},
 {"spec": {"id": 3, "frontend-address": {"ip": "fd00:6:96::1", "port": 443}, "backend-addresses": [{"ip": "2001:db8::12", "port": 6443}]}}
]`
	ports, err := serviceBackends(out, netip.MustParseAddr("2001:db8:0:101::1"))
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"80/internal": 1, "80/external": 1, "9000/": 0}, ports)
	_, err = serviceBackends("not json", netip.MustParseAddr("::1"))
	assert.Error(t, err)
}

// A fault is undone on every exit: when the run is interrupted while the fault is in
// place (the context cancelled), and when its injection fails half-way.
func TestInjectUndoesTheFaultOnAnyExit(t *testing.T) {
	var undone int
	do := func(context.Context) error { return nil }
	// Timed: kept for the hold time (a minute here) and more, which an interrupted
	// run must not wait out (an event failure is kept only eventHold).
	f := failure{name: "test", timed: true, fault: func(*Lab, *kubeNode) faults.Fault {
		return faults.Fault{Name: "test", Do: do, Undo: func(ctx context.Context) error { undone++; return ctx.Err() }}
	}}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	start := time.Now()
	_, _, _, err := inject(ctx, &Lab{}, f, &kubeNode{}, time.Minute)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 5*time.Second, "an interrupted fault does not wait out its hold time")
	assert.Equal(t, 1, undone, "undone, on a context of its own (not the cancelled one)")

	undone = 0
	do = func(context.Context) error { return errors.New("nft: half applied") }
	_, _, _, err = inject(context.Background(), &Lab{}, f, &kubeNode{}, time.Minute)
	assert.ErrorContains(t, err, "half applied")
	assert.Equal(t, 1, undone, "a failed injection is undone too")
}

// What may and may not appear in the fabric's BGP: every prefix edge1 learned in the
// default lab with Cilium passes; ClusterIPs, management, a node's /128, a pod's /128
// and foreign prefixes are refused.
func TestForbiddenRoute(t *testing.T) {
	l, err := lab.Load("")
	require.NoError(t, err)
	for _, ok := range []string{"2001:db8::10/126", "2001:db8:0:1::20/126", "2001:db8:0:101::1/128", "2001:db8:0:102::1/128",
		"2001:db8:0:a00::/80", "2001:db8:0:a01:2::/80", "2001:db8:0:e01::/64", "2001:db8:0:f00::2/128"} {
		assert.Empty(t, forbiddenRoute(l.Plan, ok), ok)
	}
	for _, bad := range []string{"fd00:6:96::/112", "fd00:6:96::1/128", l.Plan.Management.IPv6Subnet.String(), "2001:db8::12/128",
		"2001:db8:0:a01::4e79/128", "2001:db8:0:a01::/64", "2001:db8:0:1ff::1/128", "2001:db9::/48", "10.0.0.0/8"} {
		assert.NotEmpty(t, forbiddenRoute(l.Plan, bad), bad)
	}
}

func TestViaOn(t *testing.T) {
	single := "2001:db8::10/126 via fe80::a8c1:abff:fe8d:2ba0 dev eth1 proto bgp metric 20 pref medium\n"
	assert.Equal(t, "fe80::a8c1:abff:fe8d:2ba0", viaOn(single, "eth1"))
	assert.Empty(t, viaOn(single, "eth2"))
	multi := "2001:db8::10/126 proto bgp metric 20 pref medium\n\tnexthop via fe80::1 dev eth2 weight 1\n\tnexthop via fe80::2 dev eth1 weight 1\n"
	assert.Equal(t, "fe80::2", viaOn(multi, "eth1"))
	assert.Equal(t, "fe80::1", viaOn(multi, "eth2"))
}

// An empty selector selects every pod (a deny-all policy's); FormatLabelSelector's
// "<none>" would select none, and the wait for the policy would never end.
func TestLabelsSelector(t *testing.T) {
	assert.Equal(t, "", labelsSelector(nil))
	assert.Equal(t, "", labelsSelector(map[string]string{}))
	assert.Equal(t, "k8s-app=kube-dns", labelsSelector(map[string]string{"k8s-app": "kube-dns"}))
}

// An XDP lab's uplink captures are taken at the router's end: what XDP sends back out
// of a node never reaches a packet socket on the node's own end.
func TestUplinkInXDPLabs(t *testing.T) {
	l, err := lab.Load("embedded:default")
	require.NoError(t, err)
	x := &Lab{Lab: l, Plan: l.Plan}
	n := l.Plan.KubeNodes[0]
	assert.Equal(t, n.Name+":"+n.Iface, x.Uplink(n.Name))
	l, err = lab.Load("embedded:xdp")
	require.NoError(t, err)
	x = &Lab{Lab: l, Plan: l.Plan}
	n = l.Plan.KubeNodes[0]
	assert.Equal(t, n.Router+":"+n.RouterIface, x.Uplink(n.Name))
	assert.NotEqual(t, n.Router, n.Name)
}

// The report's xdp label says what ran, and why XDP could not where the spec left it
// off on links too large for it.
func TestXDPLabel(t *testing.T) {
	none := map[string]runtime.XDPAttach{"server1": {Mode: "none"}, "agent1": {Mode: "none"}}
	got := xdpLabel("", spec.MaxLinkMTU, none)
	assert.Contains(t, got, "acceleration disabled; none on 2 of 2 nodes (native XDP cannot run on this lab's 9500-byte veth links")
	assert.Equal(t, "acceleration disabled; none on 2 of 2 nodes", xdpLabel(spec.AccelerationDisabled, 3500, none))
	native := map[string]runtime.XDPAttach{"server1": {Mode: "native", Prog: "cil_xdp_entry"}}
	assert.Equal(t, "acceleration native; native on 1 of 1 nodes: cil_xdp_entry", xdpLabel(spec.AccelerationNative, 3500, native))
}
