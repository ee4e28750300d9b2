// Package xexec runs external commands the way v6lab always does: with a timeout that
// is real (it kills the command's whole process group, so a child the command left
// behind cannot hold it open), and with the tail of their output in the error, so a
// failure says what the tool said.
package xexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// WaitDelay is how long Run waits, after killing a command's process group, for its
// output pipes to close before it returns anyway.
const WaitDelay = 2 * time.Second

// Cmd describes one command.
type Cmd struct {
	Name    string
	Args    []string
	Env     []string // added to the environment
	Dir     string   // the working directory ("": the caller's)
	Timeout time.Duration
	Stdin   io.Reader
	// Stderr, when set, receives the command's standard error as it runs (the error
	// still carries its tail).
	Stderr io.Writer
}

// ErrTimeout marks a command that ran out of its time.
var ErrTimeout = errors.New("timed out")

// Command is an exec.Cmd in a process group of its own that the context's end (or
// its deadline) kills whole: the command and every child it started. Use it where a
// command must stream (Run is for the rest).
func Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	Group(cmd)
	return cmd
}

// Group puts cmd in a process group of its own, killed whole when cmd's context ends,
// with WaitDelay bounding the wait for its pipes.
func Group(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		// The negative pid is the process group; the command itself is its leader.
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return cmd.Process.Kill()
		}
		return nil
	}
	cmd.WaitDelay = WaitDelay
}

// Run runs a command and returns its standard output.
func Run(ctx context.Context, c Cmd) (string, error) {
	if c.Timeout == 0 {
		c.Timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	cmd := Command(ctx, c.Name, c.Args...)
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	cmd.Dir = c.Dir
	if c.Stdin != nil {
		cmd.Stdin = c.Stdin
	}
	var stdout strings.Builder
	var stderr Tail
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if c.Stderr != nil {
		cmd.Stderr = io.MultiWriter(&stderr, c.Stderr)
	}
	if err := cmd.Run(); err != nil {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			err = fmt.Errorf("%w after %s", ErrTimeout, c.Timeout)
		case ctx.Err() != nil:
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
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

// Lines is a writer that calls Line with each complete line a program writes, without
// its newline, however the writes split it (a last line without a newline is kept
// until one comes).
type Lines struct {
	Line func(line string)
	b    []byte
}

func (l *Lines) Write(p []byte) (int, error) {
	for _, c := range p {
		if c != '\n' {
			l.b = append(l.b, c)
			continue
		}
		l.Line(string(l.b))
		l.b = l.b[:0]
	}
	return len(p), nil
}

func tail(s string) string {
	if len(s) > 2048 {
		return s[len(s)-2048:]
	}
	return s
}
