// Package faults holds every failure v6lab's suites inject into a running lab — a link
// down, a BGP session shut, a node frozen, a link silenced or dropping one stream, a
// route steering traffic — each with its undo, which also verifies that the lab is back
// the way it was (a link up again, an nft table gone, a container running again).
//
// A Fault is injected with Inject, which returns its undo: call it on every exit; it runs
// on a context of its own, so a cancelled run (Ctrl-C) still undoes what it injected.
// The nft scripts are applied inside the member (`nft -f -`) and removed by deleting
// their table.
package faults

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"v6lab.dev/v6lab/labs/frr"
)

// Runner runs a command inside a lab member (its container) with stdin ("": none).
type Runner func(ctx context.Context, member, stdin string, args ...string) (string, error)

// Env is what faults act through: commands in the lab's members, docker on the host
// for a member's container, and a member's FRR.
type Env struct {
	Exec Runner
	// Docker runs a docker command on the host (pause/unpause a member's container).
	Docker func(ctx context.Context, args ...string) (string, error)
	// Container is a member's container name.
	Container func(member string) string
	// Router is a member's FRR.
	Router func(member string) frr.Router
}

// A Fault is one failure and its undo; Undo must be safe to call when Do failed half
// way, and it verifies the restore.
type Fault struct {
	Name     string
	Do, Undo func(ctx context.Context) error
}

// UndoTimeout bounds an undo (it runs on a context of its own).
const UndoTimeout = 2 * time.Minute

// Inject injects f. It returns the undo to call on every exit (also when Do failed, in
// which case it has already been called once and the error says how both went); the
// undo runs on a context of its own, bounded by UndoTimeout, and only once.
func Inject(ctx context.Context, f Fault) (undo func() error, err error) {
	done := false
	var undoErr error
	undo = func() error {
		if done {
			return undoErr
		}
		done = true
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), UndoTimeout)
		defer cancel()
		if undoErr = f.Undo(uctx); undoErr != nil {
			undoErr = fmt.Errorf("undo %s: %w", f.Name, undoErr)
		}
		return undoErr
	}
	if err := f.Do(ctx); err != nil {
		return undo, errors.Join(fmt.Errorf("%s: %w", f.Name, err), undo())
	}
	return undo, nil
}

// All is one fault made of several, injected in order and undone in reverse; every
// undo runs, whatever the others did.
func All(name string, fs ...Fault) Fault {
	n := 0 // how many were injected
	return Fault{Name: name,
		Do: func(ctx context.Context) error {
			for n = 0; n < len(fs); n++ {
				if err := fs[n].Do(ctx); err != nil {
					n++ // a half-done injection is undone too
					return fmt.Errorf("%s: %w", fs[n-1].Name, err)
				}
			}
			return nil
		},
		Undo: func(ctx context.Context) error {
			var errs []error
			for i := min(n, len(fs)) - 1; i >= 0; i-- {
				if err := fs[i].Undo(ctx); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", fs[i].Name, err))
				}
			}
			return errors.Join(errs...)
		}}
}

// LinkDown sets a member's interface down; the undo sets it up and checks it is.
func (e Env) LinkDown(member, iface string) Fault {
	set := func(state string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.Exec(ctx, member, "", "ip", "link", "set", iface, state)
			return err
		}
	}
	return Fault{Name: "link-down " + member + ":" + iface, Do: set("down"),
		Undo: func(ctx context.Context) error {
			if err := set("up")(ctx); err != nil {
				return err
			}
			out, err := e.Exec(ctx, member, "", "ip", "-o", "link", "show", "dev", iface)
			if err != nil {
				return err
			}
			if !LinkUp(out) {
				return fmt.Errorf("%s:%s is not up after the undo: %s", member, iface, strings.TrimSpace(out))
			}
			return nil
		}}
}

// LinkUp reads `ip -o link show dev X` and reports whether the link is administratively up.
func LinkUp(out string) bool {
	open, close := strings.Index(out, "<"), strings.Index(out, ">")
	if open < 0 || close < open {
		return false
	}
	for _, f := range strings.Split(out[open+1:close], ",") {
		if f == "UP" {
			return true
		}
	}
	return false
}

// SessionShut shuts a router's BGP session with a neighbor (`neighbor X shutdown`);
// the undo brings it back (`no neighbor X shutdown`). The session's coming back up is
// the caller's to wait for (it takes a BGP open).
func (e Env) SessionShut(router string, asn uint32, neighbor netip.Addr) Fault {
	set := func(shut bool) func(context.Context) error {
		return func(ctx context.Context) error {
			cmd := "neighbor " + neighbor.String() + " shutdown"
			if !shut {
				cmd = "no " + cmd
			}
			return e.Router(router).Configure(ctx, fmt.Sprintf("router bgp %d", asn), cmd)
		}
	}
	return Fault{Name: "session-shut " + router + ":" + neighbor.String(), Do: set(true), Undo: set(false)}
}

// Nft applies an nft script that creates table (inet family) inside a member; the undo
// deletes the table (absent already is fine) and checks it is gone.
func (e Env) Nft(name, member, table, script string) Fault {
	return Fault{Name: name + " " + member,
		Do: func(ctx context.Context) error {
			_, err := e.Exec(ctx, member, script, "nft", "-f", "-")
			return err
		},
		Undo: func(ctx context.Context) error {
			if _, err := e.Exec(ctx, member, "", Remove(table)...); err != nil && !strings.Contains(err.Error(), "No such file or directory") {
				return err
			}
			out, err := e.Exec(ctx, member, "", "nft", "list", "tables")
			if err != nil {
				return err
			}
			if HasTable(out, table) {
				return fmt.Errorf("table inet %s is still in %s after the undo", table, member)
			}
			return nil
		}}
}

// HasTable reads `nft list tables` and reports whether it lists table (inet family).
func HasTable(out, table string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == "table inet "+table {
			return true
		}
	}
	return false
}

// Silence silences a member's link with Blackhole while its carrier stays up.
func (e Env) Silence(member, iface, table string) Fault {
	return e.Nft("silence "+iface, member, table, Blackhole(table, iface))
}

// DropStream drops the UDP packets to port that a router forwards out of iface, and
// nothing else: a failure the router's BGP (and BFD) sessions on that link do not see.
func (e Env) DropStream(router, iface string, port uint16, table string) Fault {
	return e.Nft(fmt.Sprintf("drop udp/%d out of %s", port, iface), router, table, DropUDP(table, iface, port))
}

// DropStreamFrom is DropStream for one sender's packets only (src).
func (e Env) DropStreamFrom(router, iface string, src netip.Addr, port uint16, table string) Fault {
	return e.Nft(fmt.Sprintf("drop udp/%d from %s out of %s", port, src, iface), router, table, DropUDPFrom(table, iface, src, port))
}

// DropBFD drops the BFD control packets a router receives on iface: its BFD session
// over that link goes down (and BGP with it, where BFD guards the session).
func (e Env) DropBFD(router, iface, table string) Fault {
	return e.Nft("drop BFD on "+iface, router, table, DropToLocalUDP(table, iface, 3784))
}

// NodeFreeze is a node that dies without its link going down: its link silenced on its
// router (a frozen container's kernel datapath would go on forwarding) and its
// container paused, so that only BFD or the BGP hold timer finds out. The undo unpauses
// it, checks it runs, and lifts the silence.
func (e Env) NodeFreeze(node, router, routerIface, table string) Fault {
	return All("node-freeze "+node, e.Silence(router, routerIface, table), e.Pause(node))
}

// Pause pauses a member's container (its processes stop; its kernel datapath does not);
// the undo unpauses it and checks it runs.
func (e Env) Pause(member string) Fault {
	c := e.Container(member)
	return Fault{Name: "pause " + member,
		Do: func(ctx context.Context) error {
			_, err := e.Docker(ctx, "pause", c)
			return err
		},
		Undo: func(ctx context.Context) error {
			if _, err := e.Docker(ctx, "unpause", c); err != nil && !strings.Contains(err.Error(), "is not paused") {
				return err
			}
			out, err := e.Docker(ctx, "inspect", "-f", "{{.State.Status}}", c)
			if err != nil {
				return err
			}
			if s := strings.TrimSpace(out); s != "running" {
				return fmt.Errorf("%s is %s after the undo", c, s)
			}
			return nil
		}}
}

// SegmentNodeStop is a node on a layer 2 segment that stops as a powered-off host
// does: its switch port goes down and its container is paused (processes frozen, its
// MetalLB speaker silent to the others). The undo brings both back.
func (e Env) SegmentNodeStop(node, sw, port string) Fault {
	return All("segment-node-stop "+node, e.LinkDown(sw, port), e.Pause(node))
}

// ProxyNDP makes a node answer Neighbor Solicitations for addr on iface as if it held
// it (kernel proxy NDP: the interface's proxy_ndp set, a proxy entry added; net.* is
// per network namespace). The undo removes the entry, puts proxy_ndp back and checks
// that no proxy entry for addr is left.
func (e Env) ProxyNDP(node, iface string, addr netip.Addr) Fault {
	knob := "/proc/sys/net/ipv6/conf/" + iface + "/proxy_ndp"
	prev := "0"
	return Fault{Name: fmt.Sprintf("proxy-ndp %s:%s %s", node, iface, addr),
		Do: func(ctx context.Context) error {
			out, err := e.Exec(ctx, node, "", "cat", knob)
			if err != nil {
				return err
			}
			prev = strings.TrimSpace(out)
			if _, err := e.Exec(ctx, node, "", "sh", "-c", "echo 1 > "+knob); err != nil {
				return err
			}
			_, err = e.Exec(ctx, node, "", "ip", "-6", "neigh", "add", "proxy", addr.String(), "dev", iface)
			return err
		},
		Undo: func(ctx context.Context) error {
			out, err := e.Exec(ctx, node, "", "ip", "-6", "neigh", "show", "proxy", "dev", iface)
			if err != nil {
				return err
			}
			if ProxyHas(out, addr) {
				if _, err := e.Exec(ctx, node, "", "ip", "-6", "neigh", "del", "proxy", addr.String(), "dev", iface); err != nil {
					return err
				}
			}
			if _, err := e.Exec(ctx, node, "", "sh", "-c", "echo "+prev+" > "+knob); err != nil {
				return err
			}
			if out, err = e.Exec(ctx, node, "", "ip", "-6", "neigh", "show", "proxy", "dev", iface); err != nil {
				return err
			}
			if ProxyHas(out, addr) {
				return fmt.Errorf("%s:%s still proxies %s after the undo", node, iface, addr)
			}
			return nil
		}}
}

// ProxyHas reads `ip -6 neigh show proxy` and reports whether addr has an entry.
func ProxyHas(out string, addr netip.Addr) bool {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			if a, err := netip.ParseAddr(f[0]); err == nil && a == addr {
				return true
			}
		}
	}
	return false
}

// Route adds a static route in a member (`ip -6 route replace PREFIX via VIA dev DEV
// metric 1`, above what BGP installs); the undo deletes it.
func (e Env) Route(member string, prefix netip.Prefix, via, dev string) Fault {
	with := func(verb string) []string {
		return []string{"ip", "-6", "route", verb, prefix.String(), "via", via, "dev", dev, "metric", "1"}
	}
	return Fault{Name: fmt.Sprintf("route %s via %s in %s", prefix, via, member),
		Do: func(ctx context.Context) error {
			_, err := e.Exec(ctx, member, "", with("replace")...)
			return err
		},
		Undo: func(ctx context.Context) error {
			if _, err := e.Exec(ctx, member, "", with("del")...); err != nil && !strings.Contains(err.Error(), "No such process") {
				return err
			}
			return nil
		}}
}

// PMTUBlackHole is a router that forwards nothing larger than mtu bytes toward dst
// and says nothing of it (no Packet Too Big): the classic path MTU black hole of a
// middlebox that filters ICMPv6.
func (e Env) PMTUBlackHole(router string, dst netip.Addr, mtu int, table string) Fault {
	return e.Nft(fmt.Sprintf("drop packets over %d bytes toward %s", mtu, dst), router, table, DropLarger(table, dst, mtu))
}

// DropLarger is an nft script that drops, silently, the forwarded IPv6 packets to dst
// longer than size bytes.
func DropLarger(table string, dst netip.Addr, size int) string {
	return fmt.Sprintf(`add table inet %[1]s
add chain inet %[1]s forward_c { type filter hook forward priority -300; }
add rule inet %[1]s forward_c ip6 daddr %[2]s meta length > %[3]d drop
`, table, dst, size)
}

// Blackhole is an nft script that silences a router's link: nothing enters, leaves or is
// forwarded through iface, while the carrier stays up, so BGP (or BFD) has to find out
// by itself. Its priority runs before every other hook.
func Blackhole(table, iface string) string {
	return fmt.Sprintf(`add table inet %[1]s
add chain inet %[1]s input_c { type filter hook input priority -300; }
add chain inet %[1]s forward_c { type filter hook forward priority -300; }
add chain inet %[1]s output_c { type filter hook output priority -300; }
add rule inet %[1]s input_c iifname %[2]s drop
add rule inet %[1]s forward_c iifname %[2]s drop
add rule inet %[1]s forward_c oifname %[2]s drop
add rule inet %[1]s output_c oifname %[2]s drop
`, table, iface)
}

// DropUDP is an nft script that drops the UDP packets to port forwarded out of iface.
func DropUDP(table, iface string, port uint16) string {
	return fmt.Sprintf(`add table inet %[1]s
add chain inet %[1]s forward_c { type filter hook forward priority -300; }
add rule inet %[1]s forward_c oifname %[2]s udp dport %[3]d drop
`, table, iface, port)
}

// DropUDPFrom is DropUDP for the packets from src only.
func DropUDPFrom(table, iface string, src netip.Addr, port uint16) string {
	return fmt.Sprintf(`add table inet %[1]s
add chain inet %[1]s forward_c { type filter hook forward priority -300; }
add rule inet %[1]s forward_c oifname %[2]s ip6 saddr %[3]s udp dport %[4]d drop
`, table, iface, src, port)
}

// DropToLocalUDP is an nft script that drops the UDP packets to port that a router
// receives for itself on iface (BFD's control packets, port 3784).
func DropToLocalUDP(table, iface string, port uint16) string {
	return fmt.Sprintf(`add table inet %[1]s
add chain inet %[1]s input_c { type filter hook input priority -300; }
add rule inet %[1]s input_c iifname %[2]s udp dport %[3]d drop
`, table, iface, port)
}

// Masquerade is an nft script (ip6 family) that rewrites the source of everything from
// src leaving the router to to: the translation v6lab's lab must never do.
func Masquerade(table string, src netip.Prefix, to netip.Addr) string {
	return fmt.Sprintf(`add table ip6 %[1]s
add chain ip6 %[1]s post { type nat hook postrouting priority srcnat; }
add rule ip6 %[1]s post ip6 saddr %[2]s snat to %[3]s
`, table, src, to)
}

// Remove is the command that removes a fault's table (inet family).
func Remove(table string) []string { return []string{"nft", "delete", "table", "inet", table} }
