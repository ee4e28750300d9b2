package runtime

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// Without a terminal (CI logs) every step prints a timestamped line as it starts and
// one as it ends, its time for people.
func TestProgressWithoutATerminal(t *testing.T) {
	var b bytes.Buffer
	at := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	p := &Progress{W: &b, now: func() time.Time { at = at.Add(44500 * time.Millisecond); return at }}
	assert.NoError(t, p.Step("kubernetes", func() (string, error) { return "3 nodes", nil }))
	assert.Error(t, p.Step("cilium", func() (string, error) { return "", errors.New("agents not ready") }))
	assert.Equal(t, "01:00:44  … kubernetes\n01:01:29  ✓ kubernetes (45s): 3 nodes\n"+
		"01:02:13  … cilium\n01:02:58  ✗ cilium (45s): agents not ready\n", b.String())
}

// On a terminal the running step spins, and the line is rewritten when it ends.
func TestProgressOnATerminal(t *testing.T) {
	var b bytes.Buffer
	p := &Progress{W: &b, tty: true}
	assert.NoError(t, p.Step("deploy", func() (string, error) { time.Sleep(250 * time.Millisecond); return "", nil }))
	out := b.String()
	assert.Contains(t, out, "\r\033[K  ⠋ deploy 0ms")
	assert.Regexp(t, "\r\033\\[K✓ deploy \\(2[5-9]\\dms\\)\n$", out)
}
