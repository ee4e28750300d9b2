// Package render turns a planned lab into every file the lab needs, as bytes: the run
// directory is the contract between v6lab's stages, and a user can stop after render,
// edit a file, and deploy it with stock tools (containerlab, helm, kubectl).
package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"v6lab.dev/v6lab/fixtures/node/guard"

	"sigs.k8s.io/yaml"

	"v6lab.dev/v6lab/fixtures"
	"v6lab.dev/v6lab/labs/images"
	"v6lab.dev/v6lab/labs/lab"
	"v6lab.dev/v6lab/labs/pki"
	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/render/cilium"
	"v6lab.dev/v6lab/labs/render/clab"
	"v6lab.dev/v6lab/labs/render/frr"
	"v6lab.dev/v6lab/labs/render/k3s"
	"v6lab.dev/v6lab/labs/render/kube"
	"v6lab.dev/v6lab/labs/render/metallb"
	"v6lab.dev/v6lab/labs/render/node"
	"v6lab.dev/v6lab/labs/spec"
)

// File is one rendered file, its path relative to the run directory.
type File struct {
	Path string
	Data []byte
}

// Files is a rendered lab.
type Files []File

// Get returns the file at path.
func (fs Files) Get(path string) ([]byte, bool) {
	for _, f := range fs {
		if f.Path == path {
			return f.Data, true
		}
	}
	return nil, false
}

// Write writes every file under dir, creating directories as needed.
func (fs Files) Write(dir string) error {
	for _, f := range fs {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("render: %w", err)
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return fmt.Errorf("render: %w", err)
		}
	}
	return nil
}

// Options choose what render cannot know from the spec alone.
type Options struct {
	// Source picks offline (built here; the default) or online (public) images.
	Source images.Source
	// Images override single images; empty fields take the source's images.
	Images clab.Images
	// Cilium image overrides (offline images); empty means the chart's public images.
	CiliumImages cilium.Images
	// RuncWrapper makes upstream nodes run containers through the host's v6lab-runc
	// (hosts that need the capability filter; see labs/hostcompat).
	RuncWrapper bool
}

// Paths inside the run directory that upstream nodes bind.
const (
	// ImagesDir holds the image archives every node loads into its containerd.
	ImagesDir = "images"
	// StateDir holds each node's containerd state (a real filesystem: overlay
	// snapshots cannot live on the node container's own overlay).
	StateDir = "state"
	// BPFCacheDir is the machine's cache of the datapath objects Cilium agents compiled
	// (`v6lab up` makes it a link to ~/.cache/v6lab/bpf), which offline nodes bind.
	BPFCacheDir = "bpf-cache"
	// BPFCacheInNode is where a node has it (and its agent's volume binds it from).
	BPFCacheInNode = "/var/lib/v6lab/bpf-cache"
	// WrapperOnHost is where host setup installs v6lab-runc.
	WrapperOnHost = "/usr/local/lib/v6lab/v6lab-runc"
)

// RuntimeDirs are the run-directory paths that nodes bind but render does not write:
// `v6lab up` creates them (the PKI, node state, image archives) before deploying. A
// user deploying the run directory with stock tools creates them the same way.
var RuntimeDirs = []string{pki.Dir, StateDir, ImagesDir, BPFCacheDir}

// ContainerdDir is a node's containerd state directory, relative to the run directory.
func ContainerdDir(n string) string { return StateDir + "/" + n + "/containerd" }

// DefaultImages are the images of the offline path, at the keys of the recipes built into
// this binary (`v6lab images build` builds exactly these); for the k3s distribution the
// node image is the public rancher/k3s image.
func DefaultImages(s *spec.LabSpec, refs map[string]string) clab.Images {
	img := clab.Images{Router: refs["frr"], Host: refs["host"], Node: refs["node"]}
	if s.Versions.Kubernetes.Distribution == spec.DistK3s {
		img.Node = "rancher/k3s:" + strings.ReplaceAll(s.Versions.Kubernetes.Version, "+", "-")
	}
	return img
}

// All renders every file of a lab.
func All(l *lab.Lab, opt Options) (Files, error) {
	p := l.Plan
	refs, err := images.Refs(fixtures.Images)
	if err != nil {
		return nil, err
	}
	img := DefaultImages(&l.Spec.Spec, refs)
	if opt.Source == images.Online {
		img.Router, img.Host = images.PublicRouter, images.PublicHost
	}
	if opt.Images.Router != "" {
		img.Router = opt.Images.Router
	}
	if opt.Images.Host != "" {
		img.Host = opt.Images.Host
	}
	if opt.Images.Node != "" {
		img.Node = opt.Images.Node
	}
	var out Files
	add := func(path string, data []byte) { out = append(out, File{Path: path, Data: data}) }

	// The spec as understood (defaults filled in) and its plan, for people and later stages.
	specYAML, err := spec.Marshal(l.Spec)
	if err != nil {
		return nil, err
	}
	add("spec.yaml", specYAML)
	planJSON, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render plan: %w", err)
	}
	add("plan.json", append(planJSON, '\n'))
	var tree bytes.Buffer
	if err := p.WriteTree(&tree); err != nil {
		return nil, err
	}
	add("plan.txt", tree.Bytes())

	topo := clab.Build(p, img, func(n plan.KubeNode) clab.NodeExtras {
		if !node.Applies(&l.Spec.Spec) {
			// The k3s image's entrypoint is k3s; the node's entrypoint is the host guard
			// (read-only /proc/sys, as upstream nodes have), which then execs k3s with
			// the role.
			return clab.NodeExtras{Binds: []string{K3sConfigPath(n.Name) + ":" + k3s.Path, K3sGuardPath + ":" + k3sGuardInNode + ":ro"},
				Entrypoint: "/bin/sh " + k3sGuardInNode, Cmd: string(n.Role)}
		}
		binds := []string{
			node.Dir(n.Name) + "/node.json:" + node.Path + ":ro",
			pki.NodeDir + "/" + n.Name + ":" + pki.InNode + ":ro",
			ContainerdDir(n.Name) + ":/var/lib/containerd",
			ImagesDir + ":/var/lib/v6lab/images:ro",
		}
		if opt.Source != images.Online {
			binds = append(binds, BPFCacheDir+":"+BPFCacheInNode)
		}
		if opt.RuncWrapper {
			binds = append(binds, WrapperOnHost+":/usr/local/bin/v6lab-runc:ro")
		}
		return clab.NodeExtras{Binds: binds}
	})
	topoYAML, err := clab.Marshal(topo)
	if err != nil {
		return nil, err
	}
	add(clab.FileName(p), topoYAML)

	for i := range p.Routers {
		r := &p.Routers[i]
		conf, err := frr.Render(frr.ForRouter(p, r))
		if err != nil {
			return nil, err
		}
		dir := clab.FRRDir(r.Name)
		add(dir+"/frr.conf", conf)
		add(dir+"/daemons", frr.Daemons())
		add(dir+"/vtysh.conf", frr.VtyshConf())
		add(dir+"/start", frr.Start(r))
	}
	addedGuard := false
	for _, n := range p.KubeNodes {
		b, err := k3s.Marshal(k3s.ForNode(p, n))
		if err != nil {
			return nil, err
		}
		add(K3sConfigPath(n.Name), b)
		if !node.Applies(&l.Spec.Spec) && !addedGuard {
			add(K3sGuardPath, []byte(guard.Script(k3sBinary)))
			addedGuard = true
		}
		if node.Applies(&l.Spec.Spec) {
			nb, err := node.Marshal(node.ForNode(p, n, refs["pause"], opt.RuncWrapper))
			if err != nil {
				return nil, err
			}
			add(node.Dir(n.Name)+"/node.json", nb)
		}
	}

	ns, err := Documents(kube.Namespaces(p))
	if err != nil {
		return nil, err
	}
	add("kubernetes/namespaces.yaml", ns)
	if node.Applies(&l.Spec.Spec) {
		// Upstream nodes get v6lab's cluster DNS (k3s runs its own on the same address).
		image := kube.PublicCoreDNS
		if opt.Source != images.Online {
			image = refs["coredns"]
		}
		dns, err := Documents(kube.CoreDNS(p, image))
		if err != nil {
			return nil, err
		}
		add(CoreDNSPath, dns)
	}

	ciliumImages := opt.CiliumImages
	if node.Applies(&l.Spec.Spec) && opt.Source != images.Online && ciliumImages.Agent == "" {
		// Offline upstream nodes: the images built here for the spec's Cilium release,
		// and Debian's CNI directory.
		build, err := images.CiliumFor(l.Spec.Spec.Versions.Cilium)
		if err != nil {
			return nil, err
		}
		crefs, err := images.Refs(fixtures.Images, build)
		if err != nil {
			return nil, err
		}
		ciliumImages = cilium.Images{Agent: crefs[build.Agent], Operator: crefs[build.Operator], CNIBinPath: "/usr/lib/cni",
			ObjectCache: BPFCacheInNode}
	}
	values, err := cilium.ValuesFor(p, ciliumImages)
	if err != nil {
		return nil, err
	}
	vb, err := yaml.Marshal(values)
	if err != nil {
		return nil, fmt.Errorf("render cilium values: %w", err)
	}
	add("cilium/values.yaml", append([]byte(fmt.Sprintf("# Cilium %s Helm values, rendered by v6lab (datapath %s)\n",
		l.Spec.Spec.Versions.Cilium, l.Spec.Spec.Datapath)), vb...))
	cobj, err := Documents(cilium.Objects(p))
	if err != nil {
		return nil, err
	}
	add("cilium/objects.yaml", cobj)

	if objs := metallb.Objects(p); objs != nil {
		mb, err := Documents(objs)
		if err != nil {
			return nil, err
		}
		add("metallb/objects.yaml", mb)
		var mimg metallb.Images
		if node.Applies(&l.Spec.Spec) && opt.Source != images.Online {
			mimg = metallb.Images{Controller: refs["metallb-controller"], Speaker: refs["metallb-speaker"], FRR: refs["metallb-frr"]}
		}
		mv, err := yaml.Marshal(metallb.ValuesFor(mimg))
		if err != nil {
			return nil, fmt.Errorf("render metallb values: %w", err)
		}
		add("metallb/values.yaml", append([]byte(fmt.Sprintf("# MetalLB %s Helm values, rendered by v6lab (FRR mode)\n", l.Spec.Spec.Versions.MetalLB)), mv...))
	}
	return out, nil
}

// CoreDNSPath is the cluster DNS's objects, relative to the run directory.
const CoreDNSPath = "kubernetes/coredns.yaml"

// K3sGuardPath is the k3s nodes' entrypoint, relative to the run directory: the host
// guard (fixtures/node/guard), then k3s.
const K3sGuardPath = "k3s/guard.sh"

const (
	k3sGuardInNode = "/usr/local/lib/v6lab/guard.sh"
	k3sBinary      = "/bin/k3s" // the rancher/k3s image's entrypoint
)

// K3sConfigPath is where a node's k3s config is rendered, relative to the run directory.
func K3sConfigPath(node string) string { return "k3s/" + node + "/config.yaml" }

// Documents marshals objects into one multi-document YAML stream.
func Documents(objs []any) ([]byte, error) {
	var b bytes.Buffer
	for i, o := range objs {
		y, err := yaml.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("render: %w", err)
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(y)
	}
	return b.Bytes(), nil
}
