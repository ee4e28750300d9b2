// Package runtime is a lab's lifecycle on this host. Up runs a list of named,
// idempotent steps (kind's Action pipeline), each a method of one run (upRun.steps):
//
//	host setup   Docker and the host adaptations this host needs (labs/hostcompat)
//	images       the offline images of the lab's releases (skipped: --images online)
//	render       every config file into the lab's directory; a running lab's are kept
//	node files   PKI, image archives and node state for the upstream node image
//	deploy       containerlab deploys the members (routers, hosts, nodes)
//	xdp peers    XDP_PASS on the routers' ends of node links, where Cilium runs XDP (xdppeer.go)
//	bgp          every fabric session Established (bgp.go)
//	kubernetes   every node registered under its planned address
//	cilium       Cilium installed (Helm SDK), agents ready, node sessions Established
//	metallb      MetalLB installed (FRR mode), speaker sessions Established
//	dns          the cluster DNS (CoreDNS) ready on its ClusterIP
//
// Down works from whatever state is left, including a failed or interrupted Up, and
// removes only what v6lab made for that lab.
package runtime

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

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
	if p.Segment != nil {
		out = append(out, p.Segment.Switch)
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

// Up stands the lab up, one named step after the other (the package doc lists them).
// What the steps need — the lab directory, the members, the Cilium build of the
// release, the kubeconfig — is resolved once, before the first. Re-running Up on a
// healthy lab changes nothing.
func Up(ctx context.Context, l *lab.Lab, o Options) error {
	o.defaults()
	u, err := newUp(l, o)
	if err != nil {
		return err
	}
	unlock, err := Lock(o, l.Plan.Lab, "up")
	if err != nil {
		return err
	}
	defer unlock()
	pr := NewProgress(o.Out)
	for _, s := range u.steps() {
		if s.skip {
			continue
		}
		if err := pr.Step(s.name, func() (string, error) { return s.run(ctx) }); err != nil {
			return err
		}
	}
	return nil
}

// upRun is one Up: the lab and what every step needs, resolved once.
type upRun struct {
	l    *lab.Lab
	p    *plan.Plan
	o    Options
	dir  string // the lab directory
	topo string // containerlab's topology file in it
	// nodes: Kubernetes nodes are deployed; upstream: with the offline node image
	// (node files, kubernetes, cilium, metallb are v6lab's to do).
	nodes, upstream, metallb bool
	// cilium is the offline build of the spec's Cilium release (ciliumErr: why there
	// is none; an error only for the steps that need it).
	cilium     images.CiliumBuild
	ciliumErr  error
	kubeconfig string
	members    []string
	// changed: render wrote files that differ from the lab directory's.
	changed bool
	// The images the nodes import while they start (node files sets them): each step
	// waits for those it runs (waitImported), the last step for all of them.
	ciliumImages, metallbImages, allImages []string
}

type upStep struct {
	name string
	skip bool
	run  func(ctx context.Context) (string, error)
}

func newUp(l *lab.Lab, o Options) (*upRun, error) {
	dir, err := labDir(o, l.Plan.Lab)
	if err != nil {
		return nil, err
	}
	u := &upRun{l: l, p: l.Plan, o: o, dir: dir, topo: filepath.Join(dir, clab.FileName(l.Plan)),
		nodes: o.withNodes(l), kubeconfig: o.Kubeconfig(l.Plan.Lab), metallb: usesMetalLB(l.Plan)}
	u.upstream = u.nodes && node.Applies(&l.Spec.Spec) && o.Render.Source != images.Online
	if u.nodes {
		u.cilium, u.ciliumErr = images.CiliumFor(l.Spec.Spec.Versions.Cilium)
	}
	u.members = Members(l.Plan, !u.nodes)
	return u, nil
}

func (u *upRun) steps() []upStep {
	return []upStep{
		{name: "host setup", run: u.hostSetup},
		{name: "images", run: u.images},
		{name: "render", run: u.render},
		{name: "node files", skip: !u.upstream, run: u.nodeFiles},
		{name: "deploy", run: u.deploy},
		{name: "xdp peers", skip: !u.nodes || !u.l.Spec.Spec.LoadBalancer.Acceleration.Asked(), run: u.xdpPeers},
		{name: "bgp", run: u.bgp},
		{name: "kubernetes", skip: !u.upstream, run: u.kubernetes},
		{name: "cilium", skip: !u.upstream || u.o.NoCNI, run: u.installCilium},
		{name: "metallb", skip: !u.upstream || u.o.NoCNI || !u.metallb, run: u.installMetalLB},
		{name: "dns", skip: !u.upstream || u.o.NoCNI, run: u.installDNS},
	}
}

func (u *upRun) hostSetup(ctx context.Context) (string, error) {
	wrapper, err := findTool(u.o.BinDir, "v6lab-runc")
	if err != nil {
		wrapper = "" // Setup says so only if this host needs the wrapper
	}
	res, err := host.Setup(ctx, wrapper, u.o.Log)
	return strings.Join(res.Changes, "; "), err
}

func (u *upRun) images(ctx context.Context) (string, error) {
	if u.o.Render.Source == images.Online {
		return "online: the container engine pulls public images", nil
	}
	b := images.Builder{FS: fixtures.Images, BinDir: u.o.BinDir, Log: u.o.Log}
	names := images.Underlay
	var built []string
	if u.nodes && node.Applies(&u.l.Spec.Spec) {
		if u.ciliumErr != nil {
			return "", u.ciliumErr
		}
		// The release's programs first (any release: built from its Go module on demand).
		msg, err := BuildCilium(ctx, u.o.BinDir, u.cilium, progressOut(u.o.Out))
		if err != nil {
			return "", err
		}
		if msg != "" {
			built = append(built, msg)
		}
		names = append(append(append([]string{}, names...), images.Kubernetes...), u.cilium.Images()...)
		if u.metallb {
			names = append(names, images.MetalLB...)
		}
	}
	res, err := b.Build(ctx, names...)
	for _, r := range res {
		if r.Built {
			built = append(built, r.Ref)
		}
	}
	if len(built) == 0 && err == nil {
		return "up to date", nil
	}
	return "built " + strings.Join(built, ", "), err
}

func (u *upRun) render(ctx context.Context) (string, error) {
	rep, err := hostcompat.Detect()
	if err != nil {
		return "", err
	}
	u.o.Render.RuncWrapper = rep.Has(hostcompat.CapabilityFilter)
	var note string
	if running, err := runningMembers(ctx, u.l.Plan); err != nil {
		return "", err
	} else if len(running) == 0 {
		// A lab that does not run yet may take another management subnet; a running
		// one keeps the one its network has.
		if note, err = pickManagement(ctx, u.l); err != nil {
			return "", err
		}
		u.p = u.l.Plan
	}
	files, err := render.All(u.l, u.o.Render)
	if err != nil {
		return "", err
	}
	u.changed = differs(files, u.dir)
	if !u.changed {
		return u.dir + " (unchanged)", nil
	}
	// A running lab keeps the files it runs with: a changed spec is refused before
	// anything of the lab is rewritten.
	running, err := runningMembers(ctx, u.p)
	if err != nil {
		return "", err
	}
	if len(running) > 0 {
		return "", fmt.Errorf("lab %s runs another configuration (%d members up); its files are left as they are: run `v6lab down %s` first",
			u.p.Lab, len(running), u.p.Lab)
	}
	if err := nameClashes(ctx, u.p); err != nil {
		return "", err
	}
	msg := u.dir
	if note != "" {
		msg += "; " + note
	}
	return msg, files.Write(u.dir)
}

func (u *upRun) nodeFiles(ctx context.Context) (string, error) {
	if u.ciliumErr != nil {
		return "", u.ciliumErr
	}
	refs, err := images.Refs(fixtures.Images, u.cilium)
	if err != nil {
		return "", err
	}
	// Every node loads these, in this order: the pod sandbox (the node starts its
	// kubelet once it is in), Cilium, MetalLB, the cluster DNS, the lab's workload image.
	u.ciliumImages = []string{refs[u.cilium.Agent], refs[u.cilium.Operator]}
	if u.metallb {
		u.metallbImages = []string{refs["metallb-controller"], refs["metallb-speaker"], refs["metallb-frr"]}
	}
	load := slices.Concat([]string{refs["pause"]}, u.ciliumImages, u.metallbImages, []string{refs["coredns"], refs["host"]})
	u.allImages = load
	imagesDir := filepath.Join(u.dir, render.ImagesDir)
	if err := archiveImages(ctx, load, filepath.Join(CacheDir(), "archives"), imagesDir); err != nil {
		return "", err
	}
	if err := writeImportOrder(imagesDir, load); err != nil {
		return "", err
	}
	// Each node starts with the images in its store (seedContainerd), or imports them
	// itself while it starts if seeding fails.
	seeded := "seeded"
	seed, err := seedContainerd(ctx, refs["node"], imagesDir, load)
	if err != nil {
		u.o.Log.Warn("the nodes import their images themselves", "why", err)
		seeded = "imported by each node"
	}
	for _, n := range u.p.KubeNodes {
		dir := filepath.Join(u.dir, render.ContainerdDir(n.Name))
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return "", err
		}
		if seed != "" {
			if err := linkSeed(ctx, seed, dir); err != nil {
				return "", err
			}
		}
	}
	bpf, err := linkBPFCache(u.dir)
	if err != nil {
		return "", fmt.Errorf("the nodes' BPF object cache: %w", err)
	}
	kc, err := pki.EnsureCluster(u.dir, u.p)
	return fmt.Sprintf("PKI, image archives (%s), node state, %s; kubeconfig %s", seeded, bpf, kc), err
}

func (u *upRun) deploy(ctx context.Context) (string, error) {
	running, err := runningMembers(ctx, u.p)
	if err != nil {
		return "", err
	}
	if !u.changed && len(running) == len(u.members) {
		return "already running; nothing changed", nil
	}
	if len(running) > 0 {
		return "", fmt.Errorf("lab %s is partly running or runs an older configuration (%d of %d members up); run `v6lab down` first",
			u.p.Lab, len(running), len(u.members))
	}
	d, err := newDeployer(u.o.BinDir)
	if err != nil {
		return "", err
	}
	if err := d.Deploy(ctx, u.topo, u.members); err != nil {
		return "", fmt.Errorf("%w\nthe lab may be half up: `v6lab down` removes it", err)
	}
	return fmt.Sprintf("%d members with %s", len(u.members), d.Name()), nil
}

func (u *upRun) xdpPeers(ctx context.Context) (string, error) { return attachXDPPeers(ctx, u.p) }

func (u *upRun) bgp(ctx context.Context) (string, error) {
	n, err := waitBGP(ctx, u.p, u.o.BGPTimeout)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d sessions Established", n), nil
}

func (u *upRun) kubernetes(ctx context.Context) (string, error) {
	states, err := waitNodes(ctx, u.p, u.kubeconfig, u.o.NodeTimeout)
	if err != nil {
		return "", err
	}
	if u.o.NoCNI { // the last step: the lab is up with every image in
		if err := waitImported(ctx, u.p, u.allImages, u.o.NodeTimeout); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("%d nodes registered under their planned addresses", len(states)), nil
}

func (u *upRun) installCilium(ctx context.Context) (string, error) {
	chart, err := ciliumChart(u.o.BinDir, u.l.Spec.Spec.Versions.Cilium, u.cilium, u.ciliumErr)
	if err != nil {
		return "", err
	}
	if err := waitImported(ctx, u.p, u.ciliumImages, u.o.NodeTimeout); err != nil {
		return "", err
	}
	if err := installCilium(ctx, u.dir, u.kubeconfig, chart, u.o.Log); err != nil {
		return "", err
	}
	if err := waitCilium(ctx, u.p, u.kubeconfig, u.o.NodeTimeout); err != nil {
		return "", err
	}
	// XDP, where asked: attached on every node, or why not.
	xdp := ""
	if a := u.l.Spec.Spec.LoadBalancer.Acceleration; a.Asked() {
		// What the nodes' kernels say ran, not what was asked.
		modes, err := waitXDP(ctx, u.p, u.kubeconfig, 2*time.Minute)
		if err != nil {
			return "", fmt.Errorf("loadBalancer.acceleration %s: %w", a, err)
		}
		xdp = fmt.Sprintf("; XDP (acceleration %s): %s", a, XDPSummary(modes))
	}
	// Every node's BGP speaker has its session with its router.
	n, err := waitBGPWith(ctx, u.p, Members(u.p, false), u.o.BGPTimeout)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("Cilium %s ready on %d nodes; %d BGP sessions Established%s", u.l.Spec.Spec.Versions.Cilium, len(u.p.KubeNodes), n, xdp), nil
}

func (u *upRun) installMetalLB(ctx context.Context) (string, error) {
	chart, err := findTool(u.o.BinDir, filepath.Join("metallb", "chart"))
	if err != nil {
		return "", err
	}
	if err := waitImported(ctx, u.p, u.metallbImages, u.o.NodeTimeout); err != nil {
		return "", err
	}
	if err := installMetalLB(ctx, u.dir, u.kubeconfig, chart, u.p, u.o.NodeTimeout, u.o.Log); err != nil {
		return "", err
	}
	// Every speaker has its session with its node's router.
	n, err := waitBGPWith(ctx, u.p, append(Members(u.p, false), SpeakerMembers(u.p)...), u.o.BGPTimeout)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("MetalLB %s (FRR mode) ready; %d BGP sessions Established", u.l.Spec.Spec.Versions.MetalLB, n), nil
}

func (u *upRun) installDNS(ctx context.Context) (string, error) {
	// The last step: the lab is up with every image in (the workload's too).
	if err := waitImported(ctx, u.p, u.allImages, u.o.NodeTimeout); err != nil {
		return "", err
	}
	if err := installCoreDNS(ctx, u.dir, u.kubeconfig, u.o.NodeTimeout); err != nil {
		return "", err
	}
	return fmt.Sprintf("CoreDNS ready on %s (kube-system/kube-dns)", u.p.ClusterDNS), nil
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
