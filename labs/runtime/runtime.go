// Package runtime is a lab's lifecycle on this host, as a list of named, idempotent
// steps (kind's Action pipeline): host setup → images → render → deploy → BGP ready.
// `Down` works from whatever state is left, including a failed or interrupted `Up`.
package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"v6lab.dev/v6lab/labs/frr"

	"v6lab.dev/v6lab/fixtures"
	"v6lab.dev/v6lab/labs/hostcompat"
	"v6lab.dev/v6lab/labs/images"
	"v6lab.dev/v6lab/labs/lab"
	"v6lab.dev/v6lab/labs/pki"
	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/render"
	"v6lab.dev/v6lab/labs/render/clab"
	"v6lab.dev/v6lab/labs/render/node"
	"v6lab.dev/v6lab/labs/runtime/host"
)

// Options configure the lifecycle.
type Options struct {
	// StateDir holds one directory per lab (default ~/.local/state/v6lab).
	StateDir string
	// BinDir holds containerlab, v6lab-clab and v6lab-runc (default: next to v6lab).
	BinDir string
	// Render options: image source and overrides.
	Render render.Options
	// UnderlayOnly deploys routers and hosts only (no Kubernetes nodes).
	UnderlayOnly bool
	// NoCNI stops after the nodes registered (no Cilium).
	NoCNI bool
	// NodeTimeout bounds the wait for every node to register (default 5m).
	NodeTimeout time.Duration
	// BGPTimeout bounds the wait for every BGP session (default 2m).
	BGPTimeout time.Duration
	Out        io.Writer
	Log        *slog.Logger
}

func (o *Options) defaults() {
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir()
	}
	if o.BGPTimeout == 0 {
		o.BGPTimeout = 2 * time.Minute
	}
	if o.NodeTimeout == 0 {
		o.NodeTimeout = 5 * time.Minute
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
}

// DefaultStateDir is $V6LAB_STATE_DIR, else ~/.local/state/v6lab.
func DefaultStateDir() string {
	if d := os.Getenv("V6LAB_STATE_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "/var/lib/v6lab"
	}
	return filepath.Join(home, ".local", "state", "v6lab")
}

// LabDir is the run directory of a lab: its rendered files and containerlab's state.
func (o Options) LabDir(name string) string { return filepath.Join(o.StateDir, "labs", name) }

// Members are the lab members `up` deploys: routers and external hosts, and the
// Kubernetes nodes unless the lab is underlay-only.
func Members(p *plan.Plan, underlayOnly bool) []string {
	var out []string
	for _, r := range p.Routers {
		out = append(out, r.Name)
	}
	for _, h := range p.Hosts {
		out = append(out, h.Name)
	}
	if !underlayOnly {
		for _, n := range p.KubeNodes {
			out = append(out, n.Name)
		}
	}
	return out
}

// withNodes reports whether up deploys Kubernetes nodes for this lab.
func (o Options) withNodes(l *lab.Lab) bool {
	return !o.UnderlayOnly && len(l.Plan.KubeNodes) > 0
}

// Up stands the lab up. Re-running it on a healthy lab changes nothing.
func Up(ctx context.Context, l *lab.Lab, o Options) error {
	o.defaults()
	p := l.Plan
	dir, err := labDir(o, p.Lab)
	if err != nil {
		return err
	}
	unlock, err := Lock(o, p.Lab, "up")
	if err != nil {
		return err
	}
	defer unlock()
	pr := NewProgress(o.Out)
	topo := filepath.Join(dir, clab.FileName(p))

	if err := pr.Step("host setup", func() (string, error) {
		wrapper, err := findTool(o.BinDir, "v6lab-runc")
		if err != nil {
			wrapper = "" // Setup says so only if this host needs the wrapper
		}
		res, err := host.Setup(ctx, wrapper, o.Log)
		return strings.Join(res.Changes, "; "), err
	}); err != nil {
		return err
	}
	if err := pr.Step("images", func() (string, error) {
		if o.Render.Source == images.Online {
			return "online: the container engine pulls public images", nil
		}
		b := images.Builder{FS: fixtures.Images, BinDir: o.BinDir, Log: o.Log}
		names := images.Underlay
		if o.withNodes(l) && node.Applies(&l.Spec.Spec) {
			build, err := images.CiliumFor(l.Spec.Spec.Versions.Cilium)
			if err != nil {
				return "", err
			}
			names = append(append(append([]string{}, names...), images.Kubernetes...), build.Images()...)
			if usesMetalLB(p) {
				names = append(names, images.MetalLB...)
			}
		}
		res, err := b.Build(ctx, names...)
		var built []string
		for _, r := range res {
			if r.Built {
				built = append(built, r.Ref)
			}
		}
		if len(built) == 0 && err == nil {
			return "up to date", nil
		}
		return "built " + strings.Join(built, ", "), err
	}); err != nil {
		return err
	}
	rep, err := hostcompat.Detect()
	if err != nil {
		return err
	}
	o.Render.RuncWrapper = rep.Has(hostcompat.CapabilityFilter)
	var changed bool
	if err := pr.Step("render", func() (string, error) {
		var note string
		if running, err := runningMembers(ctx, l.Plan); err != nil {
			return "", err
		} else if len(running) == 0 {
			// A lab that does not run yet may take another management subnet; a
			// running one keeps the one its network has.
			if note, err = pickManagement(ctx, l); err != nil {
				return "", err
			}
			p = l.Plan
		}
		files, err := render.All(l, o.Render)
		if err != nil {
			return "", err
		}
		changed = differs(files, dir)
		if !changed {
			return dir + " (unchanged)", nil
		}
		// A running lab keeps the files it runs with: a changed spec is refused
		// before anything of the lab is rewritten.
		running, err := runningMembers(ctx, p)
		if err != nil {
			return "", err
		}
		if len(running) > 0 {
			return "", fmt.Errorf("lab %s runs another configuration (%d members up); its files are left as they are: run `v6lab down %s` first",
				p.Lab, len(running), p.Lab)
		}
		if err := nameClashes(ctx, p); err != nil {
			return "", err
		}
		msg := dir
		if note != "" {
			msg += "; " + note
		}
		return msg, files.Write(dir)
	}); err != nil {
		return err
	}
	upstream := o.withNodes(l) && node.Applies(&l.Spec.Spec) && o.Render.Source != images.Online
	if upstream {
		if err := pr.Step("node files", func() (string, error) {
			refs, err := images.Refs(fixtures.Images)
			if err != nil {
				return "", err
			}
			// Every node loads these: the pod sandbox, the lab's workload image, Cilium.
			build, err := images.CiliumFor(l.Spec.Spec.Versions.Cilium)
			if err != nil {
				return "", err
			}
			load := []string{refs["pause"], refs["host"], refs[build.Agent], refs[build.Operator]}
			if usesMetalLB(p) {
				load = append(load, refs["metallb-controller"], refs["metallb-speaker"], refs["metallb-frr"])
			}
			if err := archiveImages(ctx, load,
				filepath.Join(CacheDir(), "archives"), filepath.Join(dir, render.ImagesDir)); err != nil {
				return "", err
			}
			for _, n := range p.KubeNodes {
				if err := os.MkdirAll(filepath.Join(dir, render.ContainerdDir(n.Name)), 0o755); err != nil {
					return "", err
				}
			}
			kc, err := pki.EnsureCluster(dir, p)
			return "PKI, image archives, node state; kubeconfig " + kc, err
		}); err != nil {
			return err
		}
	}
	members := Members(p, !o.withNodes(l))
	if err := pr.Step("deploy", func() (string, error) {
		running, err := runningMembers(ctx, p)
		if err != nil {
			return "", err
		}
		if !changed && len(running) == len(members) {
			return "already running; nothing changed", nil
		}
		if len(running) > 0 {
			return "", fmt.Errorf("lab %s is partly running or runs an older configuration (%d of %d members up); run `v6lab down` first",
				p.Lab, len(running), len(members))
		}
		d, err := newDeployer(o.BinDir)
		if err != nil {
			return "", err
		}
		if err := d.Deploy(ctx, topo, members); err != nil {
			return "", fmt.Errorf("%w\nthe lab may be half up: `v6lab down` removes it", err)
		}
		return fmt.Sprintf("%d members with %s", len(members), d.Name()), nil
	}); err != nil {
		return err
	}
	if err := pr.Step("bgp", func() (string, error) {
		n, err := waitBGP(ctx, p, o.BGPTimeout)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d sessions Established", n), nil
	}); err != nil {
		return err
	}
	if !upstream {
		return nil
	}
	if err := pr.Step("kubernetes", func() (string, error) {
		states, err := waitNodes(ctx, p, o.Kubeconfig(p.Lab), o.NodeTimeout)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d nodes registered under their planned addresses", len(states)), nil
	}); err != nil || o.NoCNI {
		return err
	}
	if err := pr.Step("cilium", func() (string, error) {
		chart, err := ciliumChart(o.BinDir, l.Spec.Spec.Versions.Cilium)
		if err != nil {
			return "", err
		}
		if err := installCilium(ctx, dir, o.Kubeconfig(p.Lab), chart, o.Log); err != nil {
			return "", err
		}
		if err := waitCilium(ctx, p, o.Kubeconfig(p.Lab), o.NodeTimeout); err != nil {
			return "", err
		}
		// Every node's BGP speaker has its session with its router.
		n, err := waitBGPWith(ctx, p, Members(p, false), o.BGPTimeout)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("Cilium %s ready on %d nodes; %d BGP sessions Established", l.Spec.Spec.Versions.Cilium, len(p.KubeNodes), n), nil
	}); err != nil || !usesMetalLB(p) {
		return err
	}
	return pr.Step("metallb", func() (string, error) {
		chart, err := findTool(o.BinDir, filepath.Join("metallb", "chart"))
		if err != nil {
			return "", err
		}
		if err := installMetalLB(ctx, dir, o.Kubeconfig(p.Lab), chart, p, o.NodeTimeout, o.Log); err != nil {
			return "", err
		}
		// Every speaker has its session with its node's router.
		n, err := waitBGPWith(ctx, p, append(Members(p, false), SpeakerMembers(p)...), o.BGPTimeout)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("MetalLB %s (FRR mode) ready; %d BGP sessions Established", l.Spec.Spec.Versions.MetalLB, n), nil
	})
}

// differs reports whether any rendered file differs from what dir holds.
func differs(files render.Files, dir string) bool {
	for _, f := range files {
		have, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Path)))
		if err != nil || !bytes.Equal(have, f.Data) {
			return true
		}
	}
	return false
}

func runningMembers(ctx context.Context, p *plan.Plan) ([]Container, error) {
	cs, err := containers(ctx, p.Lab)
	if err != nil {
		return nil, err
	}
	var up []Container
	for _, c := range cs {
		if c.State == "running" {
			up = append(up, c)
		}
	}
	return up, nil
}

// expectedSessions are the sessions each router must have Established: its fabric
// links, plus its node links once Kubernetes nodes are deployed.
func expectedSessions(p *plan.Plan, deployed map[string]bool) map[string][]string {
	out := map[string][]string{}
	for _, r := range p.Routers {
		for _, i := range r.Interfaces {
			switch {
			case i.Kind == plan.LinkFabric:
				out[r.Name] = append(out[r.Name], i.Name)
			case i.Kind == plan.LinkNode && deployed[i.Peer]:
				out[r.Name] = append(out[r.Name], i.PeerAddr.String())
			}
			if i.Kind == plan.LinkNode && deployed[speakerMember(i.Peer)] {
				for _, n := range p.KubeNodes {
					if n.Name == i.Peer {
						out[r.Name] = append(out[r.Name], n.SpeakerAddress.String())
					}
				}
			}
		}
	}
	return out
}

// waitBGP waits until every expected session is Established; on timeout the error is a
// diagnosis: each session that is not up, its state, and the router's last log lines.
// Sessions to nodes are expected once a BGP speaker runs on them (Cilium, MetalLB).
func waitBGP(ctx context.Context, p *plan.Plan, timeout time.Duration) (int, error) {
	return waitBGPWith(ctx, p, Members(p, true), timeout)
}

// waitBGPWith is waitBGP with sessions to the given members' speakers expected too.
func waitBGPWith(ctx context.Context, p *plan.Plan, members []string, timeout time.Duration) (int, error) {
	deployed := map[string]bool{}
	for _, m := range members {
		deployed[m] = true
	}
	want := expectedSessions(p, deployed)
	deadline := time.Now().Add(timeout)
	for {
		var down []frr.Session
		total := 0
		for _, r := range p.Routers {
			ss, err := Router(p, r.Name).Sessions(ctx)
			state := map[string]frr.Session{}
			for _, s := range ss {
				state[s.Peer] = s
			}
			for _, peer := range want[r.Name] {
				total++
				s, ok := state[peer]
				if err != nil || !ok {
					s = frr.Session{Router: r.Name, Peer: peer, State: "absent"}
				}
				if !s.Established() {
					down = append(down, s)
				}
			}
		}
		if len(down) == 0 {
			return total, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return total, diagnose(ctx, p, down, timeout)
		}
		time.Sleep(time.Second)
	}
}

func diagnose(ctx context.Context, p *plan.Plan, down []frr.Session, timeout time.Duration) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%d BGP session(s) not Established after %s:", len(down), timeout)
	routers := map[string]bool{}
	for _, s := range down {
		fmt.Fprintf(&b, "\n  %s -> %s: %s", s.Router, s.Peer, s.State)
		routers[s.Router] = true
	}
	for r := range routers {
		logs := Router(p, r).LogTail(ctx, 15)
		fmt.Fprintf(&b, "\n  last FRR log lines of %s:\n    %s", r, strings.ReplaceAll(logs, "\n", "\n    "))
	}
	return errors.New(b.String())
}
