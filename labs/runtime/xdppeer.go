package runtime

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"

	"v6lab.dev/v6lab/labs/plan"
)

// XDP actions (include/uapi/linux/bpf.h, enum xdp_action).
const (
	xdpDrop uint32 = 1
	xdpPass uint32 = 2
)

// xdpProgram is an XDP program of two instructions that returns action for every frame.
// The kernel verifies it; nothing is compiled and no object file is shipped.
func xdpProgram(action uint32) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "v6lab_peer",
		Type:    ebpf.XDP,
		License: "Apache-2.0",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, int32(action)),
			asm.Return(),
		},
	})
}

// attachXDP attaches prog in native mode to the named links of one network namespace
// and reads back from the kernel that each runs it natively; an attached program stays
// until the link goes (with its container), not with prog's file descriptor.
func attachXDP(ns netns.NsHandle, prog *ebpf.Program, links []string) error {
	info, err := prog.Info()
	if err != nil {
		return err
	}
	id, ok := info.ID()
	if !ok {
		return errors.New("the kernel gives no program IDs")
	}
	return inNetns(ns, func() error {
		for _, name := range links {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := netlink.LinkSetXdpFdWithFlags(l, prog.FD(), nl.XDP_FLAGS_DRV_MODE); err != nil {
				return fmt.Errorf("%s: native XDP: %w", name, err)
			}
			if l, err = netlink.LinkByName(name); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			x := l.Attrs().Xdp
			if x == nil || x.AttachMode != nl.XDP_ATTACHED_DRV || x.ProgId != uint32(id) {
				return fmt.Errorf("%s: the kernel reports %+v after attaching program %d natively", name, x, id)
			}
		}
		return nil
	})
}

// inNetns runs fn on an OS thread of its own that has entered ns; the thread ends with
// it (it is never handed back to the scheduler in another namespace).
func inNetns(ns netns.NsHandle, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // no Unlock: the thread exits with this goroutine
		if err := netns.Set(ns); err != nil {
			done <- fmt.Errorf("entering the network namespace: %w", err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// xdpPeerLinks is, router by router, the routers' ends of links to Kubernetes nodes.
func xdpPeerLinks(p *plan.Plan) map[string][]string {
	out := map[string][]string{}
	for _, r := range p.Routers {
		for _, i := range r.Interfaces {
			if i.Kind == plan.LinkNode {
				out[r.Name] = append(out[r.Name], i.Name)
			}
		}
	}
	return out
}

// attachXDPPeers gives the routers' ends of node links an XDP program that passes every
// frame, in labs whose Cilium runs XDP (loadBalancer.acceleration). A frame Cilium's
// XDP program sends back out of a node (XDP_TX: a request forwarded to a backend on
// another node) crosses the veth to the router's end, and veth delivers such frames
// promptly only to a peer that runs XDP itself (the kernel's veth_xdp_xmit: its
// NAPI). With GRO alone on the routers' ends, they reached the router 14–550 ms late
// (maglev-consistency's captures; failover's TCP connections were reset), with this
// program they did not (README: XDP).
func attachXDPPeers(ctx context.Context, p *plan.Plan) (string, error) {
	prog, err := xdpProgram(xdpPass)
	if err != nil {
		return "", fmt.Errorf("loading the routers' XDP_PASS program: %w", err)
	}
	defer prog.Close()
	var done []string
	peers := xdpPeerLinks(p)
	for _, r := range p.Routers {
		links := peers[r.Name]
		if len(links) == 0 {
			continue
		}
		pid, err := containerPID(ctx, p.ContainerName(r.Name))
		if err != nil {
			return "", fmt.Errorf("%s: %w", r.Name, err)
		}
		ns, err := netns.GetFromPid(pid)
		if err != nil {
			return "", fmt.Errorf("%s: its network namespace: %w", r.Name, err)
		}
		err = attachXDP(ns, prog, links)
		ns.Close()
		if err != nil {
			return "", fmt.Errorf("%s: %w", r.Name, err)
		}
		done = append(done, r.Name+" "+strings.Join(links, ","))
	}
	return fmt.Sprintf("XDP_PASS attached natively on the routers' node links (%s)", strings.Join(done, "; ")), nil
}

// containerPID is the PID of a running container's first process.
func containerPID(ctx context.Context, name string) (int, error) {
	out, err := docker(ctx, 30*time.Second, "inspect", "--format", "{{.State.Pid}}", name)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("container %s is not running (pid %q)", name, strings.TrimSpace(out))
	}
	return pid, nil
}
