// Package netnstest runs a test's body where it can touch links without touching the
// host's: on an OS thread of its own that entered a new network namespace holding a
// veth pair va–vb, both up. The thread is never handed back to the Go scheduler (it
// ends with its goroutine), so the namespace goes with it.
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// The veth pair's ends.
const (
	A = "va"
	B = "vb"
)

// InVeth runs fn on a thread in a new network namespace with the veth pair A–B up and
// returns its error (or the setup's). The test is skipped unless it runs as root.
func InVeth(t *testing.T, fn func() error) error {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (a network namespace of its own)")
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		done <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("unshare the network namespace: %w", err)
			}
			for _, a := range [][]string{{"link", "add", A, "type", "veth", "peer", "name", B},
				{"link", "set", A, "up"}, {"link", "set", B, "up"}} {
				if err := IP(a...); err != nil {
					return err
				}
			}
			return fn()
		}()
	}()
	return <-done
}

// IP runs ip(8) in the calling thread's network namespace (fn's, under InVeth).
func IP(args ...string) error {
	if b, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %v: %v: %s", args, err, b)
	}
	return nil
}
