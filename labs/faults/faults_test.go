package faults

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestBlackholeSilencesEveryDirection(t *testing.T) {
	s := Blackhole("v6lab_x", "eth3")
	for _, want := range []string{"input_c iifname eth3 drop", "forward_c iifname eth3 drop",
		"forward_c oifname eth3 drop", "output_c oifname eth3 drop"} {
		assert.Contains(t, s, want)
	}
	assert.Equal(t, 8, strings.Count(s, "inet v6lab_x"))
	assert.Equal(t, []string{"nft", "delete", "table", "inet", "v6lab_x"}, Remove("v6lab_x"))
}
