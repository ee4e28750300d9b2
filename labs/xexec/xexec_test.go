package xexec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A timeout is real: a command whose child holds its output open (sh -c "sleep 8 &
// sleep 100") returns at the timeout, and the child is gone too.
func TestTimeoutKillsTheProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child")
	start := time.Now()
	_, err := Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "sleep 30 & echo $! > " + pidFile + "; sleep 100"},
		Timeout: time.Second})
	elapsed := time.Since(start)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrTimeout)
	assert.Less(t, elapsed, time.Second+WaitDelay+time.Second, "Run must return at its timeout")
	b, rerr := os.ReadFile(pidFile)
	require.NoError(t, rerr)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	require.Positive(t, pid)
	// The background child was killed with its group (give the kernel a moment to reap).
	deadline := time.Now().Add(2 * time.Second)
	for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	assert.True(t, errors.Is(syscall.Kill(pid, 0), syscall.ESRCH), "child %d still alive", pid)
}

func TestCancelKillsTheProcessGroup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(300 * time.Millisecond); cancel() }()
	start := time.Now()
	_, err := Run(ctx, Cmd{Name: "sh", Args: []string{"-c", "sleep 50 & sleep 100"}, Timeout: time.Minute})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 300*time.Millisecond+WaitDelay+time.Second)
}

func TestErrorCarriesStderrAndStdin(t *testing.T) {
	out, err := Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "cat; echo oops >&2; exit 3"},
		Stdin: strings.NewReader("in\n")})
	assert.Equal(t, "in\n", out)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "oops")
	assert.Contains(t, err.Error(), "exit status 3")
}
