package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"v6lab.dev/v6lab/labs/xexec"
)

// Repo is the image repository prefix of every offline-built image.
const Repo = "v6lab/"

// LabelKey is the label that carries an image's recipe key.
const LabelKey = "v6lab.dev/recipe-key"

// Suite is the Debian release every offline image is built from.
const Suite = "bookworm"

// Ref returns the image reference of a recipe at a key.
func Ref(name, key string) string { return Repo + name + ":" + key }

// Builder builds the recipes of fsys into local Docker images.
type Builder struct {
	FS     fs.FS
	AptDir string // where the host's apt sources are (default /etc/apt)
	BinDir string // where the programs images carry are (default: next to v6lab)
	Log    *slog.Logger
}

// Result says what happened to one image.
type Result struct {
	Name    string
	Ref     string
	Built   bool // false: it already existed with this key
	Elapsed time.Duration
}

// Refs returns the reference of every recipe at its current key, without building;
// with Cilium releases, their images' too (names images.CiliumFor gives).
func Refs(fsys fs.FS, cilium ...CiliumBuild) (map[string]string, error) {
	out := map[string]string{}
	all := append([]Recipe{}, Recipes...)
	for _, c := range cilium {
		for _, n := range c.Images() {
			if r := recipe(n); r != nil {
				all = append(all, *r)
			}
		}
	}
	for _, r := range all {
		k, err := Key(fsys, r.Name)
		if err != nil {
			return nil, err
		}
		out[r.Name] = Ref(r.Name, k)
	}
	return out, nil
}

// RefOf returns the reference of one recipe (a Cilium release's too) at its current key.
func RefOf(fsys fs.FS, name string) (string, error) {
	k, err := Key(fsys, name)
	if err != nil {
		return "", err
	}
	return Ref(name, k), nil
}

// Build builds the named recipes (and the bases they need) whose keyed image does not
// exist yet, in order. No names: every recipe but the Cilium releases' (those are
// built by name).
func (b *Builder) Build(ctx context.Context, names ...string) ([]Result, error) {
	var out []Result
	want := map[string]bool{}
	all := append([]Recipe{}, Recipes...)
	for _, n := range names {
		r := recipe(n)
		if r == nil {
			return nil, fmt.Errorf("images: no recipe %q", n)
		}
		if !slices.ContainsFunc(all, func(x Recipe) bool { return x.Name == n }) {
			all = append(all, *r) // a Cilium release's: built on the base, after it
		}
		for ; r != nil; r = recipe(r.Base) {
			want[r.Name] = true
		}
	}
	refs := map[string]string{}
	for _, r := range all {
		ref, err := RefOf(b.FS, r.Name)
		if err != nil {
			return nil, err
		}
		refs[r.Name] = ref
	}
	for _, r := range all {
		if len(names) > 0 && !want[r.Name] {
			continue
		}
		start := time.Now()
		ref := refs[r.Name]
		res := Result{Name: r.Name, Ref: ref}
		binKey, err := b.binariesKey(r)
		if err != nil {
			return out, err
		}
		if exists(ctx, ref, binKey) {
			out = append(out, res)
			continue
		}
		b.Log.Info("building image", "image", ref)
		if _, perr := fs.Stat(b.FS, path.Join("images", r.dir(), "packages")); perr == nil {
			err = b.debootstrap(ctx, r.Name, ref)
		} else {
			err = b.dockerBuild(ctx, r.Name, ref, refs[r.Base], binKey)
		}
		if err != nil {
			return out, fmt.Errorf("image %s: %w", r.Name, err)
		}
		res.Built, res.Elapsed = true, time.Since(start)
		out = append(out, res)
	}
	return out, nil
}

// LabelBinaries carries the identity of the third-party binaries an image was built
// with: they are built outside the recipe (make k8s), so the recipe key cannot follow
// them; an image whose binaries changed is rebuilt under the same reference.
const LabelBinaries = "v6lab.dev/binaries"

func exists(ctx context.Context, ref, binKey string) bool {
	out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "--format",
		`{{index .Config.Labels "`+LabelBinaries+`"}}`, ref).Output()
	if err != nil {
		return false
	}
	return binKey == "" || strings.TrimSpace(string(out)) == binKey
}

// binariesKey identifies a recipe's third-party binaries: make links them from a cache
// directory named by their build key, so the link targets say which build they are.
func (b *Builder) binariesKey(r Recipe) (string, error) {
	if len(r.Binaries) == 0 {
		return "", nil
	}
	binDir, err := b.binDir()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, rel := range r.Binaries {
		p := filepath.Join(binDir, filepath.FromSlash(rel))
		target, err := filepath.EvalSymlinks(p)
		if err != nil {
			return "", fmt.Errorf("image %s carries %s, built by %s: %w", r.Name, rel, buildHint(rel), err)
		}
		st, err := os.Stat(target)
		if err != nil {
			return "", err
		}
		size := st.Size()
		if st.IsDir() {
			size = 0 // the cache directory's name (in target) identifies its content
		}
		fmt.Fprintf(h, "%s %s %d %d\n", rel, target, size, st.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func (b *Builder) binDir() (string, error) {
	if b.BinDir != "" {
		return b.BinDir, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.Dir(exe), nil
}

// debootstrap builds the base image: Debian minbase plus the recipe's packages,
// imported as a single layer.
func (b *Builder) debootstrap(ctx context.Context, name, ref string) error {
	aptDir := b.AptDir
	if aptDir == "" {
		aptDir = "/etc/apt"
	}
	mirror, err := Mirror(aptDir, Suite)
	if err != nil {
		return err
	}
	pkgs, err := Packages(b.FS, name)
	if err != nil {
		return err
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		if err := xexec.Simple(ctx, 10*time.Minute, "apt-get", "update", "-qq"); err != nil {
			return err
		}
		if err := xexec.Simple(ctx, 10*time.Minute, "apt-get", "install", "-y", "-qq", "debootstrap"); err != nil {
			return fmt.Errorf("installing debootstrap: %w", err)
		}
	}
	dir, err := os.MkdirTemp("", "v6lab-rootfs-")
	if err != nil {
		return err
	}
	// debootstrap mounts /proc (and more) inside the rootfs; interrupted, it leaves them
	// mounted. They are unmounted before the tree is removed: removing through a mount
	// would reach into the host's own file systems.
	defer func() {
		if err := unmountUnder(dir); err == nil {
			os.RemoveAll(dir)
		}
	}()
	if err := xexec.Simple(ctx, 20*time.Minute, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(pkgs, ","), Suite, dir, mirror); err != nil {
		return err
	}
	if err := unmountUnder(dir); err != nil {
		return err
	}
	if err := prune(b.FS, name, dir); err != nil {
		return err
	}
	tar := xexec.Command(ctx, "tar", "-C", dir, "-c", ".")
	imp := xexec.Command(ctx, "docker", "import",
		"--change", `CMD ["sleep", "infinity"]`,
		"--change", "LABEL "+LabelKey+"="+strings.TrimPrefix(ref, Repo+name+":"),
		"-", ref)
	pipe, err := tar.StdoutPipe()
	if err != nil {
		return err
	}
	imp.Stdin = pipe
	var stderr xexec.Tail
	imp.Stderr, tar.Stderr = &stderr, &stderr
	if err := imp.Start(); err != nil {
		return err
	}
	if err := tar.Run(); err != nil {
		return fmt.Errorf("tar: %w: %s", err, stderr.String())
	}
	if err := imp.Wait(); err != nil {
		return fmt.Errorf("docker import: %w: %s", err, stderr.String())
	}
	return nil
}

// prune removes from a debootstrapped tree what the recipe's `prune` file lists (globs
// relative to the tree's root), if it has one.
func prune(fsys fs.FS, name, root string) error {
	globs, err := listFile(fsys, name, "prune")
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, g := range globs {
		if path.IsAbs(g) || strings.Contains(g, "..") {
			return fmt.Errorf("images: %s/prune: %q is not a path inside the tree", name, g)
		}
		matches, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(g)))
		if err != nil {
			return fmt.Errorf("images: %s/prune: %w", name, err)
		}
		for _, m := range matches {
			if err := os.RemoveAll(m); err != nil {
				return err
			}
		}
	}
	return nil
}

// dockerBuild builds a recipe's Dockerfile on its base. The classic builder is used:
// it needs no BuildKit component and works with every engine version.
func (b *Builder) dockerBuild(ctx context.Context, name, ref, base, binKey string) error {
	dir, err := os.MkdirTemp("", "v6lab-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	r := recipe(name)
	sub, err := fs.Sub(b.FS, path.Join("images", r.dir()))
	if err != nil {
		return err
	}
	if err := copyFS(dir, sub); err != nil {
		return err
	}
	var files []string
	for _, prog := range r.Programs {
		files = append(files, BinaryName(prog))
	}
	files = append(files, r.Binaries...)
	for _, f := range files {
		if err := b.copyBinary(f, dir); err != nil {
			return err
		}
	}
	key := strings.TrimPrefix(ref, Repo+name+":")
	args := []string{"build", "-q", "--label", LabelKey + "=" + key, "-t", ref}
	if binKey != "" {
		args = append(args, "--label", LabelBinaries+"="+binKey)
	}
	if base != "" {
		args = append(args, "--build-arg", "BASE="+base)
	}
	_, err = xexec.Run(ctx, xexec.Cmd{Name: "docker", Env: []string{"DOCKER_BUILDKIT=0"}, Timeout: 30 * time.Minute,
		Args: append(args, dir)})
	return err
}

// buildHint names the make command that builds a third-party binary (a path under the
// bin directory).
func buildHint(rel string) string {
	switch dir, rest, _ := strings.Cut(rel, "/"); dir {
	case "metallb":
		return "make metallb"
	case "cilium":
		v, _, _ := strings.Cut(rest, "/")
		return "make cilium CILIUM_VERSIONS=" + v
	default: // k8s/, coredns/
		return "make k8s"
	}
}

// copyBinary puts a binary built by make (a path under the bin directory) into a build
// context, under its base name.
func (b *Builder) copyBinary(rel, dir string) error {
	binDir, err := b.binDir()
	if err != nil {
		return err
	}
	src, err := filepath.EvalSymlinks(filepath.Join(binDir, filepath.FromSlash(rel)))
	if err != nil {
		return fmt.Errorf("the image carries %s, built by make (make build, make k8s, make cilium or v6lab images build --cilium): %w", rel, err)
	}
	dst := filepath.Join(dir, filepath.Base(rel))
	if st, err := os.Stat(src); err == nil && st.IsDir() {
		return copyFS(dst, os.DirFS(src)) // a source tree (e.g. Cilium's BPF sources)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}

func copyFS(dst string, src fs.FS) error {
	return fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dst, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

// Current reports whether an image reference is its recipe's at the recipe's current
// key (a Cilium release's image too: its recipe follows from its name).
func Current(fsys fs.FS, ref string) bool {
	name, _, ok := strings.Cut(strings.TrimPrefix(ref, Repo), ":")
	if !ok || !strings.HasPrefix(ref, Repo) {
		return false
	}
	cur, err := RefOf(fsys, name)
	return err == nil && cur == ref
}

// Prune removes v6lab images whose tag is not the current key of their recipe, and
// untagged leftovers of rebuilt images; one a container still uses is kept.
func Prune(ctx context.Context, fsys fs.FS) ([]string, error) {
	out, err := xexec.Run(ctx, xexec.Cmd{Name: "docker", Timeout: time.Minute, Args: []string{"images",
		"--filter", "label=" + LabelKey, "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"}})
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		ref, id, ok := strings.Cut(line, " ")
		if !ok || Current(fsys, ref) {
			continue
		}
		target := ref
		if strings.HasPrefix(ref, "<none>") {
			target = id
		}
		if _, err := xexec.Run(ctx, xexec.Cmd{Name: "docker", Timeout: time.Minute, Args: []string{"rmi", target}}); err != nil {
			// A container still uses it (a lab of another v6lab checkout): kept.
			if strings.Contains(err.Error(), "conflict") || strings.Contains(err.Error(), "being used") {
				continue
			}
			return removed, err
		}
		removed = append(removed, ref)
	}
	return removed, nil
}

// mountsUnder lists the mount points of a /proc/self/mountinfo text that lie below dir,
// deepest first (the order to unmount them in).
func mountsUnder(mountinfo, dir string) []string {
	var out []string
	prefix := filepath.Clean(dir) + "/"
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if strings.HasPrefix(mp, prefix) {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder detaches every mount below dir.
func unmountUnder(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	for _, mp := range mountsUnder(string(data), dir) {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("unmounting %s: %w", mp, err)
		}
	}
	return nil
}
