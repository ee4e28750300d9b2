package capture

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"v6lab.dev/v6lab/labs/internal/netnstest"
)

// A capture goes on through its interface going down and up (a link-down fault on
// the captured link): the socket's ENETDOWN is cleared, and it records again after.
// Runs in a network namespace of its own (a veth pair, link-local multicast only).
func TestCaptureSurvivesLinkDown(t *testing.T) {
	var r Result
	err := netnstest.InVeth(t, func() error {
		// Frames on va: UDP from vb to every node of the link (ff02::1).
		send := func() error {
			deadline := time.Now().Add(5 * time.Second)
			for {
				c, err := net.Dial("udp6", "[ff02::1%"+netnstest.B+"]:9")
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
		s, err := Start(t.Context(), t.TempDir(), time.Minute, Spec{Name: netnstest.A, Iface: netnstest.A, Filter: Filter{Proto: "udp", Port: 9}})
		if err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
		err = send()
		if err == nil {
			err = netnstest.IP("link", "set", netnstest.A, "down")
		}
		if err == nil {
			time.Sleep(300 * time.Millisecond)
			err = netnstest.IP("link", "set", netnstest.A, "up")
		}
		if err == nil {
			time.Sleep(200 * time.Millisecond)
			err = send()
			time.Sleep(200 * time.Millisecond)
		}
		r = s.Stop()[0]
		return err
	})
	require.NoError(t, err)
	require.NoError(t, r.Err)
	assert.Equal(t, 1, r.Down, "the link went down once under the capture")
	assert.Equal(t, 2, r.Packets, "a frame before the link went down and one after it came up")
}

// Frames the kernel had no room for are counted (a capture that lost some backs no
// verdict): a ring of one block, under a burst of frames, must lose some and say so;
// every frame sent is either in the file or counted as dropped. Captured where they
// are sent (vb), so each write is a frame the socket is offered.
func TestCaptureCountsDrops(t *testing.T) {
	saved := ring
	ring.blocks, ring.blockSize = 1, 1<<16
	t.Cleanup(func() { ring = saved })
	const burst = 20000
	var r Result
	sent := 0
	err := netnstest.InVeth(t, func() error {
		s, err := Start(t.Context(), t.TempDir(), time.Minute, Spec{Name: netnstest.B, Iface: netnstest.B, Filter: Filter{Proto: "udp", Port: 9}})
		if err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
		// The link-local address is tentative a while: until then, no socket.
		var c net.Conn
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if c, err = net.Dial("udp6", "[ff02::1%"+netnstest.B+"]:9"); err == nil || time.Now().After(deadline) {
				break
			}
		}
		for err == nil && sent < burst {
			if _, err = c.Write([]byte("v6lab")); err == nil {
				sent++
			}
		}
		if c != nil {
			c.Close()
		}
		time.Sleep(200 * time.Millisecond)
		r = s.Stop()[0]
		return err
	})
	require.NoError(t, err)
	require.NoError(t, r.Err)
	assert.Equal(t, burst, sent)
	assert.Positive(t, r.Drops, "a ring of one block cannot hold a burst of %d frames", burst)
	assert.Positive(t, r.Packets)
	assert.Equal(t, sent, r.Packets+int(r.Drops), "every frame sent is in the file or counted as dropped")
}
