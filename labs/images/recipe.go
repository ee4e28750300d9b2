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

	"v6lab.dev/v6lab/labs/ciliumbuild"
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
	// Release is the Cilium release of a Cilium image's recipe (part of its key).
	Release string
}

func (r *Recipe) dir() string {
	if r.Dir != "" {
		return r.Dir
	}
	return r.Name
}

// CiliumBuild is a Cilium release the offline images are built for: its programs, BPF
// sources, scripts and Helm chart are built from the release's Go module
// (labs/ciliumbuild, make cilium or v6lab images build --cilium) into BinDir under
// v6lab's bin directory, and its two images share one Dockerfile each
// (fixtures/images/cilium, cilium-operator) whatever the release.
type CiliumBuild struct {
	Version  string
	BinDir   string // bin-relative: cilium/<version>
	Agent    string // recipe of the agent image: cilium-<version>
	Operator string // recipe of the operator image: cilium-operator-<version>
}

// Chart is the bin-relative path of the release's Helm chart.
func (c CiliumBuild) Chart() string { return c.BinDir + "/chart" }

// Images are the release's two image recipes.
func (c CiliumBuild) Images() []string { return []string{c.Agent, c.Operator} }

// CiliumFor returns the offline build of any Cilium release ("1.19.5" or "v1.19.5"):
// every release is built the same way, from its own Go module.
func CiliumFor(version string) (CiliumBuild, error) {
	r, err := ciliumbuild.Parse(version)
	if err != nil {
		return CiliumBuild{}, err
	}
	v := string(r)
	return CiliumBuild{Version: v, BinDir: path.Join("cilium", v), Agent: ciliumAgent + v, Operator: ciliumOperator + v}, nil
}

const (
	ciliumAgent    = "cilium-"
	ciliumOperator = "cilium-operator-"
)

// ciliumRecipe is the recipe of a Cilium release's agent or operator image, by name.
func ciliumRecipe(name string) *Recipe {
	var dir, v string
	switch {
	case strings.HasPrefix(name, ciliumOperator):
		dir, v = "cilium-operator", strings.TrimPrefix(name, ciliumOperator)
	case strings.HasPrefix(name, ciliumAgent):
		dir, v = "cilium", strings.TrimPrefix(name, ciliumAgent)
	default:
		return nil
	}
	r, err := ciliumbuild.Parse(v)
	if err != nil || string(r) != v {
		return nil
	}
	bin := path.Join("cilium", v)
	if dir == "cilium-operator" {
		return &Recipe{Name: name, Dir: dir, Base: "base", Release: v, Binaries: []string{bin + "/cilium-operator-generic"}}
	}
	var agent []string
	for _, b := range []string{"cilium-agent", "cilium-dbg", "cilium-health", "cilium-health-responder",
		"cilium-mount", "cilium-sysctlfix", "cilium-cni", "hubble", "hubble-relay", "bpf", "init-container.sh", "install-plugin.sh"} {
		agent = append(agent, bin+"/"+b)
	}
	return &Recipe{Name: name, Dir: dir, Base: "base", Release: v, Binaries: agent}
}

// Recipes are every image v6lab builds, in build order.
var Recipes = []Recipe{
	{Name: "base"},
	{Name: "frr", Base: "base"},
	{Name: "host", Base: "base", Programs: []string{"probe"}},
	{Name: "pause", Programs: []string{"pause"}},
	{Name: "node", Base: "base", Programs: []string{"node"}, Binaries: []string{
		"k8s/kubelet", "k8s/kube-apiserver", "k8s/kube-controller-manager", "k8s/kube-scheduler",
		"k8s/kubectl", "k8s/etcd"}},
	{Name: "metallb-controller", Base: "base", Binaries: []string{"metallb/controller"}},
	{Name: "metallb-speaker", Base: "base", Binaries: []string{
		"metallb/speaker", "metallb/cp-tool", "metallb/frr-metrics", "metallb/frr-reloader.sh"}},
	{Name: "metallb-frr", Base: "frr"},
	{Name: "coredns", Base: "base", Binaries: []string{"coredns/coredns"}},
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
	if r.Release != "" {
		fmt.Fprintf(h, "cilium %s\n", r.Release)
	}
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
	return ciliumRecipe(name)
}

// Packages reads a recipe's package list (one per line, # comments).
func Packages(fsys fs.FS, name string) ([]string, error) {
	return listFile(fsys, name, "packages")
}

// listFile reads a recipe's list file: one entry a line, # comments.
func listFile(fsys fs.FS, name, file string) ([]string, error) {
	dir := name
	if r := recipe(name); r != nil {
		dir = r.dir()
	}
	data, err := fs.ReadFile(fsys, path.Join("images", dir, file))
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
