package conformance

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The budget follows memberlist's timers: (n-1) probe intervals to reach the stopped
// member, one for the failed probe, the suspicion timeout, a second to switch.
func TestL2Budget(t *testing.T) {
	assert.Equal(t, 8*time.Second, l2Budget(3), "2 + 1 + 4 x max(1, log10 3) + 1")
	assert.Equal(t, 6*time.Second, l2Budget(1))
	assert.Equal(t, 15*time.Second, l2Budget(10), "9 + 1 + 4 x log10 10 + 1")
	assert.Greater(t, l2Budget(20), l2Budget(10))
}
