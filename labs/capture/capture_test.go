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
