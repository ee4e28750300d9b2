package conformance

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"v6lab.dev/v6lab/labs/metrics"
)

// A window's drops are unexpected when their reason is not one it allows, whatever
// the direction; each is named with its node and count.
func TestDropWindowUnexpected(t *testing.T) {
	w := dropWindow{Label: "network-policy", Allowed: []string{reasonPolicyDenied}, Drops: map[string]map[metrics.Drop]float64{
		"agent1":  {{Reason: reasonPolicyDenied, Direction: "EGRESS"}: 12, {Reason: "Stale or unroutable IP", Direction: "INGRESS"}: 2},
		"server1": {{Reason: reasonPolicyDenied, Direction: "INGRESS"}: 3},
	}}
	lines, n := w.unexpected()
	assert.Equal(t, []string{"agent1 dropped 2 packets: Stale or unroutable IP (INGRESS)"}, lines)
	assert.Equal(t, 2.0, n)
	w.Allowed = append(w.Allowed, "Stale or unroutable IP")
	lines, n = w.unexpected()
	assert.Empty(t, lines)
	assert.Zero(t, n)
	assert.Equal(t, "agent1 12 × Policy denied (EGRESS), agent1 2 × Stale or unroutable IP (INGRESS), server1 3 × Policy denied (INGRESS)", w.summary())
}
