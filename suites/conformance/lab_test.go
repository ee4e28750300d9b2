package conformance

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

// The shape of `cilium-dbg endpoint list -o json` (Cilium's REST model), trimmed: the
// deny-all control is in effect only on endpoints whose realized policy enforces
// ingress and has caught up with the desired revision.
func TestParseEndpoints(t *testing.T) {
	out := `[
 {"id": 101, "status": {"external-identifiers": {"k8s-namespace": "app-b", "k8s-pod-name": "echo-1", "pod-name": "app-b/echo-1"},
   "policy": {"realized": {"policy-enabled": "ingress", "policy-revision": 7}, "spec": {"policy-enabled": "ingress", "policy-revision": 7}}}},
 {"id": 102, "status": {"external-identifiers": {"k8s-namespace": "app-b", "k8s-pod-name": "echo-2"},
   "policy": {"realized": {"policy-enabled": "none", "policy-revision": 6}, "spec": {"policy-revision": 7}}}},
 {"id": 7, "status": {"identity": {"id": 1}}}
]`
	eps, err := parseEndpoints(out)
	require.NoError(t, err)
	require.Len(t, eps, 3)
	assert.Equal(t, "echo-1", eps[0].Status.ExternalIdentifiers.Pod)
	assert.Equal(t, "ingress", eps[0].Status.Policy.Realized.Enabled)
	assert.Equal(t, int64(6), eps[1].Status.Policy.Realized.Revision)
	assert.Equal(t, int64(7), eps[1].Status.Policy.Spec.Revision)
	_, err = parseEndpoints("Error: cannot reach the agent")
	assert.Error(t, err)
}

// `cilium-dbg service list -o json` (Cilium's REST model), trimmed: the VIP's
// frontends and their active backends.
func TestServiceBackends(t *testing.T) {
	out := `[
 {"spec": {"id": 1, "frontend-address": {"ip": "2001:db8:0:101::1", "port": 80, "protocol": "TCP"},
   "backend-addresses": [{"ip": "2001:db8:0:a01::1", "port": 8080, "state": "active"}, {"ip": "2001:db8:0:a01::2", "port": 8080, "state": "terminating"}]}},
 {"spec": {"id": 2, "frontend-address": {"ip": "2001:db8:0:101::1", "port": 9000, "protocol": "UDP"}, "backend-addresses": []}},
 {"spec": {"id": 3, "frontend-address": {"ip": "fd00:6:96::1", "port": 443}, "backend-addresses": [{"ip": "2001:db8::12", "port": 6443}]}}
]`
	ports, err := serviceBackends(out, netip.MustParseAddr("2001:db8:0:101::1"))
	require.NoError(t, err)
	assert.Equal(t, map[uint16]int{80: 1, 9000: 0}, ports)
	_, err = serviceBackends("not json", netip.MustParseAddr("::1"))
	assert.Error(t, err)
}
