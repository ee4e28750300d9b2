package runtime

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netns"
	"golang.org/x/net/ipv6"

	"v6lab.dev/v6lab/labs/internal/netnstest"
	"v6lab.dev/v6lab/labs/plan"
)

// The routers' XDP program is attached natively, the kernel says so, and frames cross
// it; the same attach with XDP_DROP stops them — so the test sees the program on the
// path, not beside it. A veth pair in a network namespace of its own; datagrams from vb
// to all nodes of the link (ff02::1, not looped back) are received only through va.
func TestXDPPeerProgram(t *testing.T) {
	var pass, drop int
	err := netnstest.InVeth(t, func() error {
		ns, err := netns.Get()
		if err != nil {
			return err
		}
		defer ns.Close()
		rx, err := net.ListenPacket("udp6", "[::]:9")
		if err != nil {
			return err
		}
		defer rx.Close()
		tx, err := net.ListenPacket("udp6", "[::]:0")
		if err != nil {
			return err
		}
		defer tx.Close()
		vb, err := net.InterfaceByName(netnstest.B)
		if err != nil {
			return err
		}
		pc := ipv6.NewPacketConn(tx)
		if err := pc.SetMulticastLoopback(false); err != nil {
			return err
		}
		if err := pc.SetMulticastInterface(vb); err != nil {
			return err
		}
		// received sends until one datagram arrives or until the window ends.
		received := func(window time.Duration) int {
			n := 0
			for end := time.Now().Add(window); time.Now().Before(end) && n == 0; {
				_, _ = tx.WriteTo([]byte("v6lab"), &net.UDPAddr{IP: net.IPv6linklocalallnodes, Zone: netnstest.B, Port: 9})
				_ = rx.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if _, _, err := rx.ReadFrom(make([]byte, 64)); err == nil {
					n++
				}
			}
			return n
		}
		attach := func(action uint32) error {
			prog, err := xdpProgram(action)
			if err != nil {
				return err
			}
			defer prog.Close() // the link keeps it
			return attachXDP(ns, prog, []string{netnstest.A})
		}
		if err := attach(xdpPass); err != nil {
			return err
		}
		pass = received(5 * time.Second) // vb's link-local address is tentative a while
		if err := attach(xdpDrop); err != nil {
			return err
		}
		drop = received(time.Second)
		if err := attach(xdpPass); err != nil {
			return err
		}
		if received(5*time.Second) == 0 {
			return errors.New("nothing received after XDP_PASS was attached again")
		}
		prog, err := xdpProgram(xdpPass)
		if err != nil {
			return err
		}
		defer prog.Close()
		if err := attachXDP(ns, prog, []string{"nosuch"}); err == nil {
			return errors.New("attaching to a link that does not exist gave no error")
		}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 1, pass, "XDP_PASS on va: the datagram arrives")
	assert.Zero(t, drop, "XDP_DROP on va: nothing arrives (the program is on the path)")
}

// Only the routers' ends of links to Kubernetes nodes get the program.
func TestXDPPeerLinks(t *testing.T) {
	p := &plan.Plan{Routers: []plan.Router{
		{Name: "leaf1", Interfaces: []plan.Interface{{Name: "eth1", Kind: plan.LinkFabric}, {Name: "eth3", Kind: plan.LinkNode}, {Name: "eth4", Kind: plan.LinkNode}}},
		{Name: "spine", Interfaces: []plan.Interface{{Name: "eth1", Kind: plan.LinkFabric}}},
		{Name: "leaf2", Interfaces: []plan.Interface{{Name: "eth2", Kind: plan.LinkHost}, {Name: "eth3", Kind: plan.LinkNode}}},
	}}
	assert.Equal(t, map[string][]string{"leaf1": {"eth3", "eth4"}, "leaf2": {"eth3"}}, xdpPeerLinks(p))
}
