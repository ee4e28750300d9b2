package images

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
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

// Refs returns the reference of every recipe at its current key, without building.
func Refs(fsys fs.FS) (map[string]string, error) {
	out := map[string]string{}
	for _, r := range Recipes {
		k, err := Key(fsys, r.Name)
		if err != nil {
			return nil, err
		}
		out[r.Name] = Ref(r.Name, k)
	}
	return out, nil
}

// Build builds every recipe whose keyed image does not exist yet, in order.
func (b *Builder) Build(ctx context.Context) ([]Result, error) {
	var out []Result
	refs, err := Refs(b.FS)
	if err != nil {
		return nil, err
	}
	for _, r := range Recipes {
		start := time.Now()
		ref := refs[r.Name]
		res := Result{Name: r.Name, Ref: ref}
		if exists(ctx, ref) {
			out = append(out, res)
			continue
		}
		b.Log.Info("building image", "image", ref)
		if r.Base == "" {
			err = b.debootstrap(ctx, r.Name, ref)
		} else {
			err = b.dockerBuild(ctx, r.Name, ref, refs[r.Base])
		}
		if err != nil {
			return out, fmt.Errorf("image %s: %w", r.Name, err)
		}
		res.Built, res.Elapsed = true, time.Since(start)
		out = append(out, res)
	}
	return out, nil
}

func exists(ctx context.Context, ref string) bool {
	return exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", ref).Run() == nil
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
	defer os.RemoveAll(dir)
	if err := xexec.Simple(ctx, 20*time.Minute, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(pkgs, ","), Suite, dir, mirror); err != nil {
		return err
	}
	tar := exec.CommandContext(ctx, "tar", "-C", dir, "-c", ".")
	imp := exec.CommandContext(ctx, "docker", "import",
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

// dockerBuild builds a recipe's Dockerfile on its base. The classic builder is used:
// it needs no BuildKit component and works with every engine version.
func (b *Builder) dockerBuild(ctx context.Context, name, ref, base string) error {
	dir, err := os.MkdirTemp("", "v6lab-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sub, err := fs.Sub(b.FS, path.Join("images", name))
	if err != nil {
		return err
	}
	if err := copyFS(dir, sub); err != nil {
		return err
	}
	for _, prog := range recipe(name).Programs {
		if err := b.copyProgram(prog, dir); err != nil {
			return err
		}
	}
	key := strings.TrimPrefix(ref, Repo+name+":")
	_, err = xexec.Run(ctx, xexec.Cmd{Name: "docker", Env: []string{"DOCKER_BUILDKIT=0"}, Timeout: 30 * time.Minute,
		Args: []string{"build", "-q", "--build-arg", "BASE=" + base, "--label", LabelKey + "=" + key, "-t", ref, dir}})
	return err
}

// copyProgram puts a program's binary into a build context.
func (b *Builder) copyProgram(prog, dir string) error {
	binDir := b.BinDir
	if binDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		binDir = filepath.Dir(exe)
	}
	src := filepath.Join(binDir, BinaryName(prog))
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("the image carries %s, built by `make build`: %w", BinaryName(prog), err)
	}
	return os.WriteFile(filepath.Join(dir, BinaryName(prog)), data, 0o755)
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
