package conformance

import (
	"context"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The suite's phases: upgrade-disruption first; each concurrent group together, where
// its first check stands; the rest in the suite's order, where a concurrent check's
// control that breaks the lab follows its group, and a control group's controls run
// together after their checks ran; every check runs once and every control once.
func TestPlanPhases(t *testing.T) {
	checks := Checks()
	p := planPhases(checks)
	name := func(i int) string { return checks[i].Name }
	require.NotEmpty(t, p)
	require.Empty(t, p[0].together)
	assert.Equal(t, "upgrade-disruption", name(p[0].step.check), "the upgrade first: the rest judge the new release")
	runs, controls := map[string]int{}, map[string]int{}
	groups, controlGroups := map[int]bool{}, map[int]bool{}
	ranAt := map[string]int{} // the phase a check ran in
	var order []int           // the checks run alone, in the order they run
	for k, ph := range p {
		if len(ph.together) > 0 {
			g := checks[ph.together[0]].Concurrent
			assert.False(t, groups[g], "group %d runs once", g)
			groups[g] = true
			steering := 0
			for _, i := range ph.together {
				assert.Equal(t, g, checks[i].Concurrent, "%s: in the phase of another group", name(i))
				runs[name(i)]++
				ranAt[name(i)] = k
				if checks[i].Break == nil {
					controls[name(i)]++
				}
				if slices.Contains([]string{"etp-local", "maglev-consistency", "pmtu"}, name(i)) {
					steering++
				}
			}
			assert.True(t, slices.IsSorted(ph.together), "a group in the suite's order")
			// Two checks that steer VIPs with static routes never run together.
			assert.LessOrEqual(t, steering, 1, "etp-local, maglev-consistency and pmtu steer VIPs through the routers")
			continue
		}
		if len(ph.controls) > 0 {
			g := checks[ph.controls[0]].ControlGroup
			assert.False(t, controlGroups[g], "control group %d runs once", g)
			controlGroups[g] = true
			for _, i := range ph.controls {
				c := checks[i]
				assert.Equal(t, g, c.ControlGroup, "%s: in the phase of another control group", c.Name)
				assert.NotNil(t, c.Break, "%s: a variant control runs with its check", c.Name)
				_, ran := ranAt[c.Name]
				assert.True(t, ran && ranAt[c.Name] < k, "%s: its control after its run", c.Name)
				controls[c.Name]++
			}
			continue
		}
		s := ph.step
		c := checks[s.check]
		if s.controlOnly {
			assert.NotZero(t, c.Concurrent, "%s: only a concurrent check's control runs apart", c.Name)
			assert.Zero(t, c.ControlGroup, "%s: its control runs in its control group", c.Name)
			assert.NotNil(t, c.Break, "%s: a variant control runs with its check", c.Name)
			assert.Less(t, ranAt[c.Name], k, "%s: its control after its run", c.Name)
			controls[c.Name]++
			continue
		}
		assert.Zero(t, c.Concurrent, "%s: concurrent, but run alone", c.Name)
		assert.Equal(t, c.ControlGroup != 0, s.runOnly, "%s: its control runs with its run unless in a control group", c.Name)
		order = append(order, s.check)
		ranAt[c.Name] = k
		runs[c.Name]++
		if !s.runOnly {
			controls[c.Name]++
		}
	}
	assert.True(t, groups[withServices] && groups[withPolicies] && groups[withPods], "every group runs")
	assert.True(t, controlGroups[disjointBreaks], "the control group runs")
	for _, c := range checks {
		assert.Equal(t, 1, runs[c.Name], "%s: runs", c.Name)
		assert.Equal(t, 1, controls[c.Name], "%s: controls", c.Name)
	}
	assert.True(t, slices.IsSorted(order), "the checks run alone keep the suite's order: %v", order)
}

// Captures made under a check's capture log go to that log only, whatever runs
// meanwhile; captures under a context without one go to the lab's.
func TestCaptureLogs(t *testing.T) {
	x := &Lab{}
	a, b := WithCaptureLog(context.Background()), WithCaptureLog(context.Background())
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			x.recordCaptures(a, "a", map[string]Captured{"p": {Point: "n:eth1", File: "a.pcapng"}})
		}()
		go func() {
			defer wg.Done()
			x.recordCaptures(b, "b", map[string]Captured{"p": {Point: "n:eth1", File: "b.pcapng"}})
			if i == 0 {
				x.recordCaptures(context.Background(), "lab", map[string]Captured{"p": {File: "lab.pcapng"}})
			}
		}()
	}
	wg.Wait()
	ga, gb, gl := x.TakeCaptures(a), x.TakeCaptures(b), x.TakeCaptures(context.Background())
	require.Len(t, ga, 50)
	require.Len(t, gb, 50)
	require.Len(t, gl, 1)
	for _, c := range ga {
		assert.Equal(t, "a", c.Name)
	}
	for _, c := range gb {
		assert.Equal(t, "b", c.Name)
	}
	assert.Empty(t, x.TakeCaptures(a), "taken: the log is empty")
}

// The maglev check stops its own TCP probe (pkill -f) while other checks' probes run on
// the client: the pattern matches its command line, whatever follows the destination,
// and no other probe's.
func TestTCPProbePattern(t *testing.T) {
	vip := netip.MustParseAddrPort("[2001:db8:0:e01::2]:9001")
	re := regexp.MustCompile(tcpProbePattern(vip))
	cmd := func(to netip.AddrPort, opts ...string) string { return strings.Join(tcpProbeArgs(to, opts...), " ") }
	assert.True(t, re.MatchString(cmd(vip, "--conns", "4", "--interval", "50ms", "--duration", "30s")))
	assert.True(t, re.MatchString(cmd(vip)))
	for _, other := range []string{
		cmd(netip.MustParseAddrPort("[2001:db8:0:e01::20]:9001"), "--conns", "4"), // an address the VIP's is a prefix of
		cmd(netip.MustParseAddrPort("[2001:db8:0:e01::2]:9000")),
		cmd(netip.MustParseAddrPort("[2001:db8:0:e01::3]:9001"), "--conns", "16"),
		"v6lab-probe send --to [2001:db8:0:e01::2]:9001",
		"sh -c v6lab-probe tcp --to [2001:db8:0:e01::2]:9001",
	} {
		assert.False(t, re.MatchString(other), other)
	}
}
