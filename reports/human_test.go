package reports

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHuman(t *testing.T) {
	for d, want := range map[time.Duration]string{
		850 * time.Millisecond: "850ms", 7630 * time.Millisecond: "7.6s", 44500 * time.Millisecond: "45s",
		4*time.Minute + 45944044489*time.Nanosecond: "4m46s", 62*time.Minute + 10*time.Second: "1h02m",
		-2 * time.Second: "-2.0s",
	} {
		assert.Equal(t, want, Human(d), d.String())
	}
}

func TestHeadline(t *testing.T) {
	c := Check{Name: "failover", Status: Pass, Reason: "ok",
		Figures: map[string]float64{"outage_ms_link-down": 0, "outage_ms_node-stopped": 7630, "lost_link-down": 0},
		Config:  map[string]float64{"budget_ms_link-down": 1000, "budget_ms_node-stopped": 10000}}
	assert.Equal(t, "link-down 0ms (budget 1.0s), node-stopped 7.6s (budget 10s)", c.Headline())
	assert.Empty(t, Check{Status: Pass, Reason: "ok"}.Headline())
	assert.Equal(t, "6 of 6 pairs", Check{Status: Pass, Reason: "6 of 6 pairs"}.Headline())
	assert.Equal(t, "unanswered", Check{Status: Fail, Reason: "unanswered\nmore"}.Headline())
}

// The HTML's first screen says what failed and why: the failed check's reason, and a
// control that failed for another reason with what it expected and saw.
func TestHTMLSaysWhatFailedFirst(t *testing.T) {
	r := &Report{Lab: "default", StartedAt: time.Unix(0, 0), FinishedAt: time.Unix(286, 0), Checks: []Check{
		{Name: "gua-egress", Status: Pass, Reason: "ok"},
		{Name: "failover", Status: Fail, Reason: "link-down of agent1: outage 1400 ms exceeds its budget of 1s"},
		{Name: "pod-connectivity", Status: Pass, Reason: "ok", Seconds: 12.3, Control: &Control{Breakage: "deny-all", Status: Inconclusive,
			Expected: "unanswered", Observed: []string{"timeout"}, Reason: "kubectl: deadline exceeded"}},
	}}
	b, err := r.HTML()
	require.NoError(t, err)
	page := string(b)
	head, _, ok := strings.Cut(page, "<h2>Checks</h2>")
	require.True(t, ok)
	assert.Contains(t, head, "4m46s")
	assert.Contains(t, head, "What failed")
	assert.Contains(t, head, "outage 1400 ms exceeds its budget")
	assert.Contains(t, head, "was inconclusive: expected <code>unanswered</code>, observed <code>timeout</code>")
	assert.NotContains(t, head, "gua-egress")
	assert.Contains(t, page, "12s")
}
