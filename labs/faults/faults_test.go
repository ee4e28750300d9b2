package faults

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBlackholeSilencesEveryDirection(t *testing.T) {
	s := Blackhole("v6lab_x", "eth3")
	for _, want := range []string{"input_c iifname eth3 drop", "forward_c iifname eth3 drop",
		"forward_c oifname eth3 drop", "output_c oifname eth3 drop"} {
		assert.Contains(t, s, want)
	}
	assert.Equal(t, 8, strings.Count(s, "inet v6lab_x"))
	assert.Equal(t, []string{"nft", "delete", "table", "inet", "v6lab_x"}, Remove("v6lab_x"))
	assert.Contains(t, DropUDP("t", "eth2", 9000), "forward_c oifname eth2 udp dport 9000 drop")
	assert.Contains(t, DropUDPFrom("t", "eth2", netip.MustParseAddr("2001:db8:0:a01::7"), 9000), "forward_c oifname eth2 ip6 saddr 2001:db8:0:a01::7 udp dport 9000 drop")
	assert.Contains(t, DropLarger("t", netip.MustParseAddr("2001:db8:0:101::2"), 1500), "forward_c ip6 daddr 2001:db8:0:101::2 meta length > 1500 drop")
	assert.Contains(t, Masquerade("t", netip.MustParsePrefix("2001:db8:1::/64"), netip.MustParseAddr("2001:db8::1")),
		"ip6 saddr 2001:db8:1::/64 snat to 2001:db8::1")
}

func TestReaders(t *testing.T) {
	assert.True(t, LinkUp("5: eth1@if6: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP"))
	assert.False(t, LinkUp("5: eth1@if6: <BROADCAST,MULTICAST> mtu 1500 qdisc noqueue state DOWN"))
	assert.False(t, LinkUp("Device \"eth9\" does not exist."))
	assert.True(t, HasTable("table inet filter\ntable inet v6lab_x\n", "v6lab_x"))
	assert.False(t, HasTable("table inet v6lab_xy\ntable ip6 v6lab_x\n", "v6lab_x"))
}

// recorder is a stand-in lab: it records the commands and answers them from a table.
type recorder struct {
	calls  []string
	fail   map[string]error
	answer map[string]string
}

func (r *recorder) env() Env {
	run := func(ctx context.Context, who string, args []string) (string, error) {
		c := who + ": " + strings.Join(args, " ")
		r.calls = append(r.calls, c)
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		for k, err := range r.fail {
			if strings.Contains(c, k) {
				return "", err
			}
		}
		for k, out := range r.answer {
			if strings.Contains(c, k) {
				return out, nil
			}
		}
		return "", nil
	}
	return Env{
		Exec: func(ctx context.Context, member, stdin string, args ...string) (string, error) {
			return run(ctx, member, args)
		},
		Docker:    func(ctx context.Context, args ...string) (string, error) { return run(ctx, "docker", args) },
		Container: func(m string) string { return "v6lab-t-" + m },
	}
}

func TestLinkDownUndoVerifiesTheLinkIsUp(t *testing.T) {
	r := &recorder{answer: map[string]string{"link show": "2: eth1: <BROADCAST> state DOWN"}}
	undo, err := Inject(context.Background(), r.env().LinkDown("leaf1", "eth1"))
	require.NoError(t, err)
	err = undo()
	require.ErrorContains(t, err, "leaf1:eth1 is not up after the undo")
	assert.Equal(t, []string{"leaf1: ip link set eth1 down", "leaf1: ip link set eth1 up", "leaf1: ip -o link show dev eth1"}, r.calls)
	assert.Equal(t, err, undo(), "the undo runs once")
	assert.Len(t, r.calls, 3)
}

func TestNodeFreezeUndoesAHalfDoneInjection(t *testing.T) {
	r := &recorder{fail: map[string]error{"docker: pause": errors.New("cannot pause")},
		answer: map[string]string{"inspect": "running\n"}}
	undo, err := Inject(context.Background(), r.env().NodeFreeze("agent1", "leaf1", "eth3", "v6lab_nodestop"))
	require.ErrorContains(t, err, "cannot pause")
	require.NoError(t, undo(), "a container that never paused is fine to unpause")
	assert.Equal(t, []string{
		"leaf1: nft -f -", "docker: pause v6lab-t-agent1",
		"docker: unpause v6lab-t-agent1", "docker: inspect -f {{.State.Status}} v6lab-t-agent1",
		"leaf1: nft delete table inet v6lab_nodestop", "leaf1: nft list tables",
	}, r.calls, "undone in reverse, the half-done pause included")
}

func TestNftUndoFailsWhileTheTableStays(t *testing.T) {
	r := &recorder{answer: map[string]string{"list tables": "table inet v6lab_negative\n"}}
	undo, err := Inject(context.Background(), r.env().DropStream("leaf1", "eth3", 9000, "v6lab_negative"))
	require.NoError(t, err)
	require.ErrorContains(t, undo(), "still in leaf1")
}

func TestUndoRunsAfterCancel(t *testing.T) {
	r := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	undo, err := Inject(ctx, r.env().Route("edge1", netip.MustParsePrefix("2001:db8::1/128"), "fe80::1", "eth2"))
	require.NoError(t, err)
	cancel()
	require.NoError(t, undo())
	assert.Equal(t, "edge1: ip -6 route del 2001:db8::1/128 via fe80::1 dev eth2 metric 1", r.calls[1])
}

func TestProxyNDPPutsTheKnobBackAndChecksTheEntryIsGone(t *testing.T) {
	vip := netip.MustParseAddr("2001:db8:0:3::1:1")
	r := &recorder{answer: map[string]string{"cat /proc": "0\n", "neigh show proxy": "2001:db8:0:3::1:1 dev eth2 proxy\n"}}
	undo, err := Inject(context.Background(), r.env().ProxyNDP("agent1", "eth2", vip))
	require.NoError(t, err)
	err = undo()
	require.ErrorContains(t, err, "still proxies 2001:db8:0:3::1:1", "the entry reads back after the undo")
	assert.Equal(t, []string{
		"agent1: cat /proc/sys/net/ipv6/conf/eth2/proxy_ndp",
		"agent1: sh -c echo 1 > /proc/sys/net/ipv6/conf/eth2/proxy_ndp",
		"agent1: ip -6 neigh add proxy 2001:db8:0:3::1:1 dev eth2",
		"agent1: ip -6 neigh show proxy dev eth2",
		"agent1: ip -6 neigh del proxy 2001:db8:0:3::1:1 dev eth2",
		"agent1: sh -c echo 0 > /proc/sys/net/ipv6/conf/eth2/proxy_ndp",
		"agent1: ip -6 neigh show proxy dev eth2",
	}, r.calls)

	assert.True(t, ProxyHas("2001:db8::5 dev eth2 proxy\n2001:db8:0:3::1:1 dev eth2 proxy\n", vip))
	assert.False(t, ProxyHas("2001:db8:0:3::1:10 dev eth2 proxy\n", vip))
	assert.False(t, ProxyHas("", vip))
}

func TestSegmentNodeStop(t *testing.T) {
	r := &recorder{answer: map[string]string{"inspect": "running\n", "link show": "5: eth3@if2: <BROADCAST,UP> state UP"}}
	undo, err := Inject(context.Background(), r.env().SegmentNodeStop("agent1", "segment", "eth3"))
	require.NoError(t, err)
	require.NoError(t, undo())
	assert.Equal(t, []string{
		"segment: ip link set eth3 down", "docker: pause v6lab-t-agent1",
		"docker: unpause v6lab-t-agent1", "docker: inspect -f {{.State.Status}} v6lab-t-agent1",
		"segment: ip link set eth3 up", "segment: ip -o link show dev eth3",
	}, r.calls)
}
