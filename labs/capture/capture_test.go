package capture

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	goruntime "runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A capture goes on through its interface going down and up (a link-down fault on
// the captured link): the socket's ENETDOWN is cleared, and it records again after.
// Runs in a network namespace of its own (a veth pair, link-local multicast only).
func TestCaptureSurvivesLinkDown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a network namespace, a packet socket)")
	}
	type out struct {
		r   Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		// This thread enters a new network namespace and is never handed back
		// (no UnlockOSThread: it ends with the goroutine).
		goruntime.LockOSThread()
		r, err := func() (Result, error) {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return Result{}, err
			}
			ip := func(args ...string) error {
				if b, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
					return fmt.Errorf("ip %v: %v: %s", args, err, b)
				}
				return nil
			}
			for _, a := range [][]string{{"link", "add", "va", "type", "veth", "peer", "name", "vb"},
				{"link", "set", "va", "up"}, {"link", "set", "vb", "up"}} {
				if err := ip(a...); err != nil {
					return Result{}, err
				}
			}
			// Frames on va: UDP from vb to every node of the link (ff02::1).
			send := func() error {
				deadline := time.Now().Add(5 * time.Second)
				for {
					c, err := net.Dial("udp6", "[ff02::1%vb]:9")
					if err == nil {
						_, err = c.Write([]byte("v6lab"))
						c.Close()
					}
					if err == nil {
						return nil
					}
					if time.Now().After(deadline) { // the link-local address is tentative a while
						return err
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
			s, err := Start(t.Context(), t.TempDir(), time.Minute, Spec{Name: "va", Iface: "va", Filter: Filter{Proto: "udp", Port: 9}})
			if err != nil {
				return Result{}, err
			}
			time.Sleep(100 * time.Millisecond)
			if err := send(); err != nil {
				s.Stop()
				return Result{}, err
			}
			if err := ip("link", "set", "va", "down"); err != nil {
				s.Stop()
				return Result{}, err
			}
			time.Sleep(300 * time.Millisecond)
			if err := ip("link", "set", "va", "up"); err != nil {
				s.Stop()
				return Result{}, err
			}
			time.Sleep(200 * time.Millisecond)
			err = send()
			time.Sleep(200 * time.Millisecond)
			return s.Stop()[0], err
		}()
		done <- out{r, err}
	}()
	o := <-done
	require.NoError(t, o.err)
	require.NoError(t, o.r.Err)
	assert.Equal(t, 1, o.r.Down, "the link went down once under the capture")
	assert.Equal(t, 2, o.r.Packets, "a frame before the link went down and one after it came up")
}
