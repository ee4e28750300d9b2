package hubble

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testdata/observe.jsonpb is `hubble observe -o jsonpb --port 9000` from a default lab's
// agents (Cilium 1.20.2) after hubble-flows ran: a probe to the world host forwarded
// (to the network), its reply (to the endpoint), and one probe under default deny as a
// policy verdict and a drop event.
func flows(t *testing.T) []Flow {
	t.Helper()
	data, err := os.ReadFile("testdata/observe.jsonpb")
	require.NoError(t, err)
	fs, err := Parse(string(data))
	require.NoError(t, err)
	require.Len(t, fs, 4)
	return fs
}

var (
	pod   = netip.MustParseAddr("2001:db8:0:a01:2::9013")
	world = netip.MustParseAddrPort("[2001:db8:0:e02::2]:9000")
)

func TestParseReadsAgentOutput(t *testing.T) {
	fs := flows(t)
	f := fs[0]
	assert.Equal(t, Forwarded, f.Verdict)
	assert.Equal(t, pod, f.Src)
	assert.Equal(t, world.Addr(), f.Dst)
	assert.Equal(t, "UDP", f.Proto)
	assert.Equal(t, world.Port(), f.DstPort)
	assert.NotZero(t, f.SrcPort)
	assert.NotZero(t, f.SrcID)
	assert.Equal(t, uint32(2), f.DstID, "the world host is identity 2 (world)")
	assert.NotEmpty(t, f.SrcPod)
	assert.Equal(t, "TO_NETWORK", f.Point)
	assert.False(t, f.Reply)
	assert.True(t, fs[1].Reply)
	for _, d := range fs[2:] {
		assert.Equal(t, Dropped, d.Verdict)
		assert.Equal(t, PolicyDenied, d.DropReason)
	}
	assert.Empty(t, f.DropReason, "only a drop has a reason")
}

func TestParseNamesABadLine(t *testing.T) {
	_, err := Parse("{\"flow\":{}}\nnot json\n")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "line 2")
}

func TestCompare(t *testing.T) {
	fs := flows(t)
	at := func(f Flow) (time.Time, time.Time) { return f.Time.Add(-time.Second), f.Time.Add(time.Second) }
	fwdFrom, fwdTo := at(fs[0])
	dropFrom, dropTo := at(fs[2])
	probe := func(from, to time.Time, sent, delivered int) Probe {
		return Probe{What: "p", Src: pod, Dst: world, Proto: "UDP", Start: from, End: to, Sent: sent, Delivered: delivered}
	}
	for _, tc := range []struct {
		name     string
		p        Probe
		disagree bool
	}{
		{"delivered and forwarded", probe(fwdFrom, fwdTo, 5, 5), false},
		{"lost on the wire and dropped by policy", probe(dropFrom, dropTo, 5, 0), false},
		{"lost on the wire, Hubble forwarded it", probe(fwdFrom, fwdTo, 5, 0), true},
		{"delivered, Hubble dropped it", probe(dropFrom, dropTo, 5, 5), true},
		{"delivered, Hubble saw nothing", probe(fwdTo.Add(time.Hour), fwdTo.Add(2*time.Hour), 5, 5), true},
		{"never sent, Hubble forwarded it", probe(fwdFrom, fwdTo, 0, 0), true},
		{"never sent, nothing in Hubble", probe(fwdTo.Add(time.Hour), fwdTo.Add(2*time.Hour), 0, 0), false},
	} {
		got := Compare([]Probe{tc.p}, fs)
		assert.Equal(t, tc.disagree, len(got) == 1, "%s: %v", tc.name, got)
	}
	a := For(probe(dropFrom, dropTo, 5, 0), fs)
	assert.Equal(t, []string{PolicyDenied}, a.DropReasons)
	assert.Equal(t, "DROPPED ×2 (POLICY_DENIED)", a.String())
}

func TestForBackends(t *testing.T) {
	fs := flows(t)
	from, to := fs[0].Time.Add(-time.Second), fs[0].Time.Add(time.Second)
	vip := netip.AddrPortFrom(netip.MustParseAddr("2001:db8:100::10"), world.Port())
	p := Probe{What: "to a VIP", Src: pod, Dst: vip, Proto: "UDP", Start: from, End: to, Sent: 5, Delivered: 5}
	assert.Empty(t, For(p, fs).Flows, "a flow to another address is not the VIP's")
	p.Backends = []netip.AddrPort{world}
	assert.Equal(t, 1, For(p, fs).Forwarded, "a flow to a backend of the VIP is the VIP's")
	p.Backends = []netip.AddrPort{netip.AddrPortFrom(world.Addr(), world.Port()+1)}
	assert.Empty(t, For(p, fs).Flows, "a backend's other port is not the probe's")
}

func TestForReplies(t *testing.T) {
	at := time.Date(2026, 12, 4, 17, 44, 30, 0, time.UTC)
	client := netip.MustParseAddr("2001:db8:0:e01::2")
	vip := netip.MustParseAddrPort("[2001:db8:100::10]:9000")
	backend := netip.MustParseAddrPort("[2001:db8:0:a01::10]:9000")
	// What an agent reported of a DSR exchange: the backend's reply, twice (from the
	// pod, and rev-NATed from the VIP), no request.
	fs := []Flow{
		{Time: at, Src: backend.Addr(), SrcPort: backend.Port(), Dst: client, DstPort: 39555, Proto: "UDP", Verdict: Forwarded, Reply: true},
		{Time: at, Src: vip.Addr(), SrcPort: vip.Port(), Dst: client, DstPort: 39555, Proto: "UDP", Verdict: Forwarded, Reply: true},
		{Time: at, Src: backend.Addr(), SrcPort: 8080, Dst: client, DstPort: 40000, Proto: "UDP", Verdict: Forwarded, Reply: true},
	}
	p := Probe{What: "to a VIP", Src: client, Dst: vip, Proto: "UDP", Start: at.Add(-time.Second), End: at.Add(time.Second),
		Sent: 20, Delivered: 20, Backends: []netip.AddrPort{backend}}
	assert.Empty(t, For(p, fs).Flows, "replies are not the probe's unless it asks")
	assert.Len(t, Compare([]Probe{p}, fs), 1)
	p.Replies = true
	assert.Equal(t, 2, For(p, fs).Forwarded, "the replies from the backend and the VIP, not from another port")
	assert.Empty(t, Compare([]Probe{p}, fs))
}

func TestObserveArgs(t *testing.T) {
	since := time.Date(2026, 12, 3, 23, 53, 11, 5e8, time.UTC)
	args := ObserveArgs(since, since.Add(time.Second), pod)
	assert.Equal(t, []string{"observe", "--output", "jsonpb", "--ip", pod.String(),
		"--since", "2026-12-03T23:53:11.5Z", "--until", "2026-12-03T23:53:12.5Z"}, args)
}

func TestObserveArgsSeveralAddresses(t *testing.T) {
	since := time.Date(2026, 12, 3, 23, 53, 11, 0, time.UTC)
	other := netip.MustParseAddr("2001:db8:0:a02::1")
	args := ObserveArgs(since, since, pod, other)
	assert.Equal(t, []string{"--ip", pod.String(), "--ip", other.String()}, args[3:7], "hubble ORs repeated --ip filters")
}
