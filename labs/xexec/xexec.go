// Package xexec runs external commands the way v6lab always does: with a timeout, and
// with the tail of their output in the error, so a failure says what the tool said.
package xexec

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Cmd describes one command.
type Cmd struct {
	Name    string
	Args    []string
	Env     []string // added to the environment
	Timeout time.Duration
	Stdin   *os.File
}

// Run runs a command and returns its standard output.
func Run(ctx context.Context, c Cmd) (string, error) {
	if c.Timeout == 0 {
		c.Timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Name, c.Args...)
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	if c.Stdin != nil {
		cmd.Stdin = c.Stdin
	}
	var stdout strings.Builder
	var stderr Tail
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("timed out after %s", c.Timeout)
		}
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", c.Name, strings.Join(c.Args, " "), err,
			strings.TrimSpace(stderr.String()+"\n"+tail(stdout.String())))
	}
	return stdout.String(), nil
}

// Simple runs name with args under a timeout, discarding output unless it fails.
func Simple(ctx context.Context, timeout time.Duration, name string, args ...string) error {
	_, err := Run(ctx, Cmd{Name: name, Args: args, Timeout: timeout})
	return err
}

// Tail keeps the last 4 KiB written to it.
type Tail struct{ b []byte }

func (t *Tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *Tail) String() string { return string(t.b) }

func tail(s string) string {
	if len(s) > 2048 {
		return s[len(s)-2048:]
	}
	return s
}
