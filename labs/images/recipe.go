// Package images turns the recipes in fixtures/images into local images. A recipe's
// content key is a hash of its files (and of its base's key), so an image is rebuilt
// only when its recipe, or a recipe it builds on, changed.
package images

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Source says where a lab's images come from.
type Source string

const (
	// Offline images are built here from the recipes (debootstrap + Debian packages).
	Offline Source = "offline"
	// Online images are public ones, pulled by the container engine from its registry.
	Online Source = "online"
)

// PublicRouter and PublicHost are the online images: FRR's own image and a general
// network-tools image; a user can name others. Untested on machines without a registry.
const (
	PublicRouter = "frrouting/frr:v8.4.1"
	PublicHost   = "nicolaka/netshoot:v0.13"
)

// Recipe is one image recipe: a directory of fixtures/images, holding either a
// `packages` list (debootstrapped into a base image) or a Dockerfile.
type Recipe struct {
	Name string
	// Dir is the recipe's directory under fixtures/images when it is not Name: the
	// images of each Cilium release share one Dockerfile and differ in their binaries.
	Dir  string
	Base string // recipe it builds on ("" for a debootstrapped or FROM scratch image)
	// Programs are v6lab programs the image carries: their binaries (built by make,
	// found next to v6lab) go into the build context, and their sources (the
	// fixtures directory of the same name) into the key.
	Programs []string
	// Binaries are third-party programs built by make (paths under v6lab's bin
	// directory); the recipe's `versions` file pins them and is part of the key.
	Binaries []string
}

func (r *Recipe) dir() string {
	if r.Dir != "" {
		return r.Dir
	}
	return r.Name
}

// CiliumBuild is a Cilium release the offline images are built for: make cilium builds
// its programs from the tools module of that release into BinDir (under v6lab's bin
// directory), with the Helm chart of the same release (BinDir/chart).
type CiliumBuild struct {
	Version  string
	BinDir   string
	Agent    string // recipe of the agent image
	Operator string // recipe of the operator image
}

// Chart is the bin-relative path of the release's Helm chart.
func (c CiliumBuild) Chart() string { return c.BinDir + "/chart" }

// Images are the release's two image recipes.
func (c CiliumBuild) Images() []string { return []string{c.Agent, c.Operator} }

// CiliumBuilds are the Cilium releases built offline (tools/cilium, tools/cilium-1.19,
// tools/cilium-1.18); the first is the default. One per minor: Cilium upgrades one minor
// at a time, so v6lab upgrade's chain 1.18 -> 1.19 -> 1.20 needs each.
var CiliumBuilds = []CiliumBuild{
	{Version: "1.20.2", BinDir: "cilium", Agent: "cilium", Operator: "cilium-operator"},
	{Version: "1.19.3", BinDir: "cilium-1.19", Agent: "cilium-1.19", Operator: "cilium-operator-1.19"},
	{Version: "1.18.4", BinDir: "cilium-1.18", Agent: "cilium-1.18", Operator: "cilium-operator-1.18"},
}

// CiliumFor returns the offline build of a Cilium version ("1.18.4" or "v1.18.4").
func CiliumFor(version string) (CiliumBuild, error) {
	var have []string
	for _, c := range CiliumBuilds {
		if c.Version == strings.TrimPrefix(version, "v") {
			return c, nil
		}
		have = append(have, c.Version)
	}
	return CiliumBuild{}, fmt.Errorf("offline Cilium images are built for Cilium %s (make cilium), not %q: pick one of them in spec.versions.cilium, or use public images (--images online)",
		strings.Join(have, ", "), version)
}

// Recipes are every image v6lab builds, in build order.
var Recipes = append(append([]Recipe{
	{Name: "base"},
	{Name: "frr", Base: "base"},
	{Name: "host", Base: "base", Programs: []string{"probe"}},
	{Name: "pause", Programs: []string{"pause"}},
	{Name: "node", Base: "base", Programs: []string{"node"}, Binaries: []string{
		"k8s/kubelet", "k8s/kube-apiserver", "k8s/kube-controller-manager", "k8s/kube-scheduler",
		"k8s/kubectl", "k8s/etcd"}},
}, ciliumRecipes()...), []Recipe{
	{Name: "metallb-controller", Base: "base", Binaries: []string{"metallb/controller"}},
	{Name: "metallb-speaker", Base: "base", Binaries: []string{
		"metallb/speaker", "metallb/cp-tool", "metallb/frr-metrics", "metallb/frr-reloader.sh"}},
	{Name: "metallb-frr", Base: "frr"},
	{Name: "coredns", Base: "base", Binaries: []string{"coredns/coredns"}},
}...)

// ciliumRecipes are the agent and operator recipes of every Cilium build: one
// Dockerfile each (fixtures/images/cilium, cilium-operator), the binaries of the release.
func ciliumRecipes() []Recipe {
	var out []Recipe
	for _, c := range CiliumBuilds {
		var agent []string
		for _, b := range []string{"cilium-agent", "cilium-dbg", "cilium-health", "cilium-health-responder",
			"cilium-mount", "cilium-sysctlfix", "cilium-cni", "bpf", "init-container.sh", "install-plugin.sh"} {
			agent = append(agent, c.BinDir+"/"+b)
		}
		out = append(out,
			Recipe{Name: c.Agent, Dir: "cilium", Base: "base", Binaries: agent},
			Recipe{Name: c.Operator, Dir: "cilium-operator", Base: "base", Binaries: []string{c.BinDir + "/cilium-operator-generic"}})
	}
	return out
}

// Underlay are the images of routers and external hosts; Kubernetes adds the node and
// pause images (the upstream distribution); each Cilium build has its own two
// (CiliumBuild.Images).
var (
	Underlay   = []string{"base", "frr", "host"}
	Kubernetes = []string{"pause", "node", "coredns"}
	MetalLB    = []string{"metallb-controller", "metallb-speaker", "metallb-frr"}
)

// BinaryName is the file name of a program's binary.
func BinaryName(program string) string { return "v6lab-" + program }

// Key hashes a recipe's files (sorted by path) and its base's key.
func Key(fsys fs.FS, name string) (string, error) {
	r := recipe(name)
	if r == nil {
		return "", fmt.Errorf("images: no recipe %q", name)
	}
	h := sha256.New()
	if r.Base != "" {
		base, err := Key(fsys, r.Base)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "base %s\n", base)
	}
	var files []string
	for _, dir := range append([]string{path.Join("images", r.dir())}, r.Programs...) {
		if err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, p)
			}
			return err
		}); err != nil {
			return "", fmt.Errorf("images: recipe %s: %w", name, err)
		}
	}
	sort.Strings(files)
	for _, f := range files {
		data, err := fs.ReadFile(fsys, f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func recipe(name string) *Recipe {
	for i := range Recipes {
		if Recipes[i].Name == name {
			return &Recipes[i]
		}
	}
	return nil
}

// Packages reads a recipe's package list (one per line, # comments).
func Packages(fsys fs.FS, name string) ([]string, error) {
	dir := name
	if r := recipe(name); r != nil {
		dir = r.dir()
	}
	data, err := fs.ReadFile(fsys, path.Join("images", dir, "packages"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out, nil
}

// Mirror returns the Debian mirror the host's apt already uses for suite (so no mirror
// is named in v6lab's code): V6LAB_DEBIAN_MIRROR if set, else the first source in
// /etc/apt/sources.list.d/*.sources (deb822) or /etc/apt/sources.list that serves suite.
func Mirror(aptDir, suite string) (string, error) {
	if m := os.Getenv("V6LAB_DEBIAN_MIRROR"); m != "" {
		return m, nil
	}
	sources, _ := filepath.Glob(filepath.Join(aptDir, "sources.list.d", "*.sources"))
	for _, f := range sources {
		if m := fromDeb822(f, suite); m != "" {
			return m, nil
		}
	}
	if m := fromOneLine(filepath.Join(aptDir, "sources.list"), suite); m != "" {
		return m, nil
	}
	return "", fmt.Errorf("images: no apt source serves %s under %s; set V6LAB_DEBIAN_MIRROR", suite, aptDir)
}

func fromDeb822(file, suite string) string {
	data, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	for _, stanza := range strings.Split(string(data), "\n\n") {
		fields := map[string]string{}
		for _, l := range strings.Split(stanza, "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(l, "#") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !hasField(fields["types"], "deb") {
			continue
		}
		if uris := strings.Fields(fields["uris"]); hasField(fields["suites"], suite) && len(uris) > 0 {
			return uris[0]
		}
	}
	return ""
}

func fromOneLine(file, suite string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		// deb [options] URI suite components...
		if len(fs) < 3 || fs[0] != "deb" {
			continue
		}
		i := 1
		if strings.HasPrefix(fs[1], "[") {
			for i < len(fs) && !strings.HasSuffix(fs[i], "]") {
				i++
			}
			i++
		}
		if i+1 < len(fs) && fs[i+1] == suite {
			return fs[i]
		}
	}
	return ""
}

func hasField(list, want string) bool {
	for _, f := range strings.Fields(list) {
		if f == want {
			return true
		}
	}
	return false
}
