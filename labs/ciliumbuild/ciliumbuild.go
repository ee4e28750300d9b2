// Package ciliumbuild builds any Cilium release from its Go module, offline, the same
// way for every release. It generates a build module for the release from the
// release's own go.mod: the module requires github.com/cilium/cilium at the release
// and carries the release's replace directives over (a dependency's replaces do not
// apply to the module that requires it, so without them the build would use upstream
// modules where Cilium uses its forks). It resolves that module through the Go module
// proxy; a module the proxy refuses is replaced from one documented table
// (Substitutes) or the build says which module it is and what the user can do. Then
// one go build makes the agent and its helpers, another the operator (its IPAM tag),
// and the BPF sources, the init containers' scripts and the Helm chart are staged from
// the same module. The result is cached under <cache>/cilium/<version>-<key>, the key
// a hash of everything that decides it, so a warm run builds nothing.
package ciliumbuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"

	"v6lab.dev/v6lab/labs/human"
	"v6lab.dev/v6lab/labs/xexec"
)

// Module is Cilium's Go module.
const Module = "github.com/cilium/cilium"

// generator versions the way a build module is made: a change to this file that
// changes what is built bumps it, so every cached release is rebuilt.
const generator = "1"

// Release is a Cilium release, "1.19.5".
type Release string

var releaseRE = regexp.MustCompile(`^v?(\d+)\.(\d+)\.(\d+)$`)

// Parse accepts "1.19.5" and "v1.19.5".
func Parse(v string) (Release, error) {
	m := releaseRE.FindStringSubmatch(strings.TrimSpace(v))
	if m == nil {
		return "", fmt.Errorf("%q is not a Cilium release (MAJOR.MINOR.PATCH, e.g. 1.20.2)", v)
	}
	return Release(m[1] + "." + m[2] + "." + m[3]), nil
}

// Minor is "1.19" for 1.19.5.
func (r Release) Minor() string { return string(r)[:strings.LastIndex(string(r), ".")] }

// Tag is the module version, "v1.19.5".
func (r Release) Tag() string { return "v" + string(r) }

// program is one binary the images carry and the package it is built from.
type program struct{ name, pkg string }

// agentPrograms are built together (one go build); the operator has a build tag of
// its own (generic IPAM, none of the cloud providers').
var agentPrograms = []program{
	{"cilium-agent", "daemon"},
	{"cilium-dbg", "cilium-dbg"},
	{"cilium-health", "cilium-health"},
	{"cilium-health-responder", "cilium-health/responder"},
	{"cilium-cni", "plugins/cilium-cni"},
	{"cilium-mount", "tools/mount"},
	{"cilium-sysctlfix", "tools/sysctlfix"},
	// Hubble's CLI and relay, in the module since 1.17: the agent image carries both
	// (the relay's Deployment runs the agent image), v6lab observe runs the CLI.
	{"hubble", "hubble"},
	{"hubble-relay", "hubble-relay"},
}

var operator = program{"cilium-operator-generic", "operator"}

const operatorTags = "ipam_provider_operator"

// staged are copied from the release's module: source path -> name in the build.
var staged = [][2]string{
	{"bpf", "bpf"},
	{"images/cilium/init-container.sh", "init-container.sh"},
	{"plugins/cilium-cni/install-plugin.sh", "install-plugin.sh"},
	{"install/kubernetes/cilium", "chart"},
}

// Files are the names a build directory holds for the images: every program, the BPF
// sources, the two scripts and the chart (directory "chart").
func Files() []string {
	var out []string
	for _, p := range append(append([]program{}, agentPrograms...), operator) {
		out = append(out, p.name)
	}
	for _, s := range staged {
		out = append(out, s[1])
	}
	return out
}

// Builder builds releases into CacheDir/cilium.
type Builder struct {
	CacheDir string    // v6lab's cache directory (~/.cache/v6lab)
	Go       string    // the go command (default "go")
	Out      io.Writer // progress lines (nil: none)
	// Tick is how often a running build says it still runs (default 30 s).
	Tick time.Duration
	// TTY rewrites the progress line in place instead of printing one per tick.
	TTY bool

	goVersion string
}

// Applied is a substitute a build used: for what the release wanted, and why.
type Applied struct {
	Module string `json:"module"`
	Wanted string `json:"wanted"` // the unserved module@version
	Using  string `json:"using"`
	Why    string `json:"why"`
}

// Info describes a build; it is the build directory's release.json.
type Info struct {
	Version     string    `json:"version"`
	Key         string    `json:"key"`
	GoVersion   string    `json:"goVersion"`
	Substitutes []Applied `json:"substitutes,omitempty"`
	BuiltAt     time.Time `json:"builtAt"`
	TookSeconds float64   `json:"tookSeconds"`
	// Dir is where the build is (not stored).
	Dir string `json:"-"`
}

// Took is how long the build took.
func (i Info) Took() time.Duration { return time.Duration(i.TookSeconds * float64(time.Second)) }

// InfoFile is the file every complete build directory holds.
const InfoFile = "release.json"

// Result says what Build did.
type Result struct {
	Info
	Built bool // false: the cache had it
}

func (b *Builder) goCmd() string {
	if b.Go != "" {
		return b.Go
	}
	return "go"
}

func (b *Builder) root() string { return filepath.Join(b.CacheDir, "cilium") }

func (b *Builder) say(format string, a ...any) {
	if b.Out != nil {
		fmt.Fprintf(b.Out, format+"\n", a...)
	}
}

// env is the environment of every go command of a build: modules on, no workspace,
// pure Go (the images carry no C library for them), go.sum written as the module is
// resolved.
func buildEnv() []string {
	return []string{"GO111MODULE=on", "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-mod=mod -buildvcs=false"}
}

func ldflags(r Release) string {
	// The version stamped as Cilium's Makefile does.
	return "-s -X " + Module + "/pkg/version.ciliumVersion=" + string(r)
}

// Key is the content key of a release's build: the release, this generator's
// version, the substitutes table, the programs and what is staged, the flags and the
// Go toolchain. A release's module content is fixed by its version (the proxy's
// checksum database guarantees it), so nothing has to be downloaded to compute it.
func (b *Builder) Key(ctx context.Context, r Release) (string, error) {
	if b.goVersion == "" {
		v, err := xexec.Run(ctx, xexec.Cmd{Name: b.goCmd(), Args: []string{"env", "GOVERSION"}, Timeout: time.Minute})
		if err != nil {
			return "", fmt.Errorf("building Cilium needs Go: %w", err)
		}
		b.goVersion = strings.TrimSpace(v)
	}
	h := sha256.New()
	fmt.Fprintf(h, "generator %s\nrelease %s\ngo %s\nldflags %s\ntags %s\n", generator, r, b.goVersion, ldflags(r), operatorTags)
	for _, p := range append(append([]program{}, agentPrograms...), operator) {
		fmt.Fprintf(h, "program %s %s\n", p.name, p.pkg)
	}
	for _, s := range staged {
		fmt.Fprintf(h, "staged %s %s\n", s[0], s[1])
	}
	for _, s := range Substitutes {
		fmt.Fprintf(h, "substitute %q %q %v %q\n", s.Module, s.Version, s.Upstream, s.Stub)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// Cached returns the complete build of a release at its current key, if there is one.
func (b *Builder) Cached(ctx context.Context, r Release) (Info, bool, error) {
	key, err := b.Key(ctx, r)
	if err != nil {
		return Info{}, false, err
	}
	dir := filepath.Join(b.root(), string(r)+"-"+key)
	info, err := readInfo(dir)
	if err != nil {
		return Info{Version: string(r), Key: key, Dir: dir}, false, nil
	}
	return info, true, nil
}

func readInfo(dir string) (Info, error) {
	data, err := os.ReadFile(filepath.Join(dir, InfoFile))
	if err != nil {
		return Info{}, err
	}
	var info Info
	if err := json.Unmarshal(data, &info); err != nil {
		return Info{}, fmt.Errorf("%s: %w", filepath.Join(dir, InfoFile), err)
	}
	info.Dir = dir
	return info, nil
}

// List returns every complete build in the cache, newest release first.
func List(cacheDir string) ([]Info, error) {
	entries, err := os.ReadDir(filepath.Join(cacheDir, "cilium"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if info, err := readInfo(filepath.Join(cacheDir, "cilium", e.Name())); err == nil {
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Version != out[j].Version {
			return Less(Release(out[j].Version), Release(out[i].Version))
		}
		return out[i].BuiltAt.After(out[j].BuiltAt)
	})
	return out, nil
}

// Less orders releases by version.
func Less(a, b Release) bool {
	var x, y [3]int
	fmt.Sscanf(string(a), "%d.%d.%d", &x[0], &x[1], &x[2])
	fmt.Sscanf(string(b), "%d.%d.%d", &y[0], &y[1], &y[2])
	for i := range x {
		if x[i] != y[i] {
			return x[i] < y[i]
		}
	}
	return false
}

// NotServedError is a release, or a module it needs, that the Go module proxy refuses.
type NotServedError struct {
	Release Release
	Module  string // module@version
	Detail  string // what go said
	// NoSubstitute: a module the release needs (not the release itself) and the
	// substitutes table has nothing for it.
	NoSubstitute bool
}

func (e *NotServedError) Error() string {
	if !e.NoSubstitute {
		return fmt.Sprintf("Cilium %s cannot be built offline: the Go module proxy does not serve %s (go: %s). "+
			"Pick a release it serves (v6lab images list shows the releases built here), or use public images: --images online",
			e.Release, e.Module, e.Detail)
	}
	return fmt.Sprintf("Cilium %s cannot be built offline: it needs %s, which the Go module proxy does not serve (go: %s), "+
		"and labs/ciliumbuild/substitutes.go has no stand-in for it. Add one there (the same module at a version the "+
		"proxy serves, the upstream module instead of a fork, or a stub, with why it is safe), or use public images: --images online",
		e.Release, e.Module, e.Detail)
}

// Build builds a release, or finds it in the cache.
func (b *Builder) Build(ctx context.Context, r Release) (Result, error) {
	info, ok, err := b.Cached(ctx, r)
	if err != nil || ok {
		return Result{Info: info}, err
	}
	name := "cilium-" + string(r)
	last := b.lastTook(name)
	msg := fmt.Sprintf("%s: building from %s@%s (key %s", name, Module, r.Tag(), info.Key)
	if last > 0 {
		msg += "; took " + human.Duration(last) + " last time"
	}
	b.say("%s)", msg)
	start := time.Now()
	stop := b.ticker(name, start)
	applied, err := b.build(ctx, r, info.Dir)
	stop()
	if err != nil {
		return Result{Info: info}, err
	}
	took := time.Since(start)
	info = Info{Version: string(r), Key: info.Key, GoVersion: b.goVersion, Substitutes: applied,
		BuiltAt: time.Now().UTC(), TookSeconds: took.Seconds(), Dir: info.Dir}
	tmp := info.Dir + ".tmp"
	data, _ := json.MarshalIndent(info, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, InfoFile), append(data, '\n'), 0o644); err != nil {
		return Result{Info: info}, err
	}
	os.RemoveAll(info.Dir)
	if err := os.Rename(tmp, info.Dir); err != nil {
		return Result{Info: info}, err
	}
	b.saveTook(name, took)
	b.say("%s: built in %s", name, human.Duration(took))
	return Result{Info: info, Built: true}, nil
}

// build does the work in dir+".tmp", left for Build to complete.
func (b *Builder) build(ctx context.Context, r Release, dir string) ([]Applied, error) {
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, err
	}
	modDir := filepath.Join(tmp, "module")
	if err := os.MkdirAll(modDir, 0o755); err != nil {
		return nil, err
	}
	src, err := b.download(ctx, r, tmp)
	if err != nil {
		return nil, err
	}
	gen, err := newGenModule(r, src)
	if err != nil {
		return nil, err
	}
	applied, err := b.resolve(ctx, r, gen, modDir)
	if err != nil {
		return nil, err
	}
	for _, a := range applied {
		b.say("cilium-%s: %s is not served: using %s", r, a.Wanted, a.Using)
	}
	if err := b.compile(ctx, r, modDir, tmp, applied); err != nil {
		return nil, err
	}
	for _, s := range staged {
		if err := copyTree(filepath.Join(src.Dir, filepath.FromSlash(s[0])), filepath.Join(tmp, s[1])); err != nil {
			return nil, fmt.Errorf("Cilium %s: staging %s: %w", r, s[0], err)
		}
	}
	return applied, nil
}

// source is the release's module as the proxy served it.
type source struct {
	Dir   string // its files (module cache, read-only)
	GoMod string // its go.mod
	Error string
}

func (b *Builder) download(ctx context.Context, r Release, dir string) (source, error) {
	out, err := xexec.Run(ctx, xexec.Cmd{Name: b.goCmd(), Args: []string{"mod", "download", "-json", Module + "@" + r.Tag()},
		Env: append(buildEnv(), "PWD="+dir), Timeout: 15 * time.Minute, Dir: dir})
	var src source
	if jerr := json.Unmarshal([]byte(out), &src); jerr != nil && err == nil {
		return src, fmt.Errorf("Cilium %s: go mod download: %w", r, jerr)
	}
	if src.Error != "" || src.Dir == "" {
		detail := src.Error
		if detail == "" && err != nil {
			detail = err.Error()
		}
		return src, &NotServedError{Release: r, Module: Module + "@" + r.Tag(), Detail: firstLine(detail)}
	}
	return src, nil
}

// genModule is the build module being made: the release's go.mod carried over into
// a module of v6lab's own.
type genModule struct {
	r        Release
	release  *modfile.File
	src      source
	replaces map[string]modfile.Replace // by old path
	stubs    map[string]string          // module -> stub source
}

func newGenModule(r Release, src source) (*genModule, error) {
	data, err := os.ReadFile(src.GoMod)
	if err != nil {
		return nil, err
	}
	f, err := modfile.Parse(src.GoMod, data, nil)
	if err != nil {
		return nil, fmt.Errorf("Cilium %s: its go.mod: %w", r, err)
	}
	g := &genModule{r: r, release: f, src: src, replaces: map[string]modfile.Replace{}, stubs: map[string]string{}}
	for _, rep := range f.Replace {
		nr := *rep
		if nr.New.Version == "" && !filepath.IsAbs(nr.New.Path) {
			// A directory of the release's own tree: the same directory in the module cache.
			nr.New.Path = filepath.Join(src.Dir, filepath.FromSlash(nr.New.Path))
		}
		g.replaces[nr.Old.Path] = nr
	}
	return g, nil
}

// file renders the build module's go.mod.
func (g *genModule) file() ([]byte, error) {
	f := &modfile.File{}
	f.AddModuleStmt("v6lab.dev/ciliumbuild/v" + strings.ReplaceAll(string(g.r), ".", "_"))
	goVersion := "1.24"
	if g.release.Go != nil {
		goVersion = g.release.Go.Version
	}
	if err := f.AddGoStmt(goVersion); err != nil {
		return nil, err
	}
	f.AddComment("// Generated by v6lab (labs/ciliumbuild) to build Cilium " + string(g.r) +
		" offline: its go.mod's replace directives carried over, substitutes from labs/ciliumbuild/substitutes.go.")
	if err := f.AddRequire(Module, g.r.Tag()); err != nil {
		return nil, err
	}
	olds := make([]string, 0, len(g.replaces))
	for o := range g.replaces {
		olds = append(olds, o)
	}
	sort.Strings(olds)
	for _, o := range olds {
		rep := g.replaces[o]
		if err := f.AddReplace(rep.Old.Path, rep.Old.Version, rep.New.Path, rep.New.Version); err != nil {
			return nil, err
		}
	}
	f.Cleanup()
	return f.Format()
}

// write writes go.mod and the stubs into dir.
func (g *genModule) write(dir string) error {
	data, err := g.file()
	if err != nil {
		return err
	}
	for mod, src := range g.stubs {
		sd := filepath.Join(dir, stubDir(mod))
		if err := os.MkdirAll(sd, 0o755); err != nil {
			return err
		}
		gomod := "// A stand-in shipped with v6lab (labs/ciliumbuild/substitutes.go).\nmodule " + mod + "\n\ngo 1.22\n"
		if err := os.WriteFile(filepath.Join(sd, "go.mod"), []byte(gomod), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(sd, "stub.go"), []byte(src), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "go.mod"), data, 0o644)
}

func stubDir(module string) string {
	return filepath.Join("stub", strings.NewReplacer("/", "_", ".", "_").Replace(module))
}

// apply puts a substitute into the module.
func (g *genModule) apply(s Substitute) {
	switch {
	case s.Version != "":
		g.replaces[s.Module] = modfile.Replace{Old: modModule(s.Module, ""), New: modModule(s.Module, s.Version)}
	case s.Upstream:
		delete(g.replaces, s.Module)
	default:
		g.stubs[s.Module] = s.Stub
		g.replaces[s.Module] = modfile.Replace{Old: modModule(s.Module, ""), New: modModule("./"+filepath.ToSlash(stubDir(s.Module)), "")}
	}
}

// unservedRE finds the module go could not fetch, in its error text: "M@V: reading
// URL: 404 Not Found", or for a replaced one "M@V (replaced by F@W): reading ...".
var unservedRE = regexp.MustCompile(`([^\s@:()]+)@(v[^\s:()]+)(?: \(replaced by ([^\s@()]+)@(v[^\s:()]+)\))?: reading \S+: (?:403|404|410)\b`)

// unserved returns the module (as the release names it: the original of a fork) and
// the module@version the proxy refused, from go's error text.
func (g *genModule) unserved(text string) (module, wanted string, ok bool) {
	m := unservedRE.FindStringSubmatch(text)
	if m == nil {
		return "", "", false
	}
	module, wanted = m[1], m[1]+"@"+m[2]
	if m[3] != "" {
		wanted = m[3] + "@" + m[4]
	}
	// A fork named without its original: the replace that points at it.
	for old, rep := range g.replaces {
		if rep.New.Path == module {
			return old, module + "@" + m[2], true
		}
	}
	return module, wanted, true
}

// resolve writes the build module and resolves every package the build needs
// (downloading modules, writing go.sum), applying a substitute for each module the
// proxy refuses.
func (b *Builder) resolve(ctx context.Context, r Release, g *genModule, dir string) ([]Applied, error) {
	var applied []Applied
	done := map[string]bool{}
	for {
		if err := g.write(dir); err != nil {
			return applied, err
		}
		args := []string{"list", "-deps", "-tags", operatorTags, "-f", "{{if .Error}}{{.ImportPath}}: {{.Error}}{{end}}"}
		for _, p := range append(append([]program{}, agentPrograms...), operator) {
			args = append(args, Module+"/"+p.pkg)
		}
		out, err := xexec.Run(ctx, xexec.Cmd{Name: b.goCmd(), Args: args, Env: append(buildEnv(), "PWD="+dir), Dir: dir, Timeout: 30 * time.Minute})
		if err == nil && strings.TrimSpace(out) == "" {
			return applied, nil
		}
		text := out
		if err != nil {
			text = err.Error() + "\n" + out
		}
		module, wanted, ok := g.unserved(text)
		if !ok {
			return applied, fmt.Errorf("Cilium %s: resolving its build module: %s", r, strings.TrimSpace(text))
		}
		s, have := substituteFor(module)
		if !have {
			return applied, &NotServedError{Release: r, Module: wanted, Detail: unservedLine(text), NoSubstitute: true}
		}
		if done[module] {
			return applied, fmt.Errorf("Cilium %s: the substitute %s for %s is not served either: %s", r, s.What(), wanted, unservedLine(text))
		}
		done[module] = true
		g.apply(s)
		applied = append(applied, Applied{Module: module, Wanted: wanted, Using: s.What(), Why: s.Why})
	}
}

// compile builds the programs into out: the agent and its helpers with one go build,
// the operator with its tag.
func (b *Builder) compile(ctx context.Context, r Release, modDir, out string, applied []Applied) error {
	binDir := filepath.Join(out, ".bin") + string(filepath.Separator)
	run := func(tags string, progs []program) error {
		args := []string{"build", "-trimpath", "-ldflags=" + ldflags(r), "-o", binDir}
		if tags != "" {
			args = append(args, "-tags", tags)
		}
		for _, p := range progs {
			args = append(args, Module+"/"+p.pkg)
		}
		if _, err := xexec.Run(ctx, xexec.Cmd{Name: b.goCmd(), Args: args, Env: append(buildEnv(), "PWD="+modDir), Dir: modDir, Timeout: 90 * time.Minute}); err != nil {
			if len(applied) > 0 {
				var subs []string
				for _, a := range applied {
					subs = append(subs, a.Using+" for "+a.Wanted)
				}
				return fmt.Errorf("building Cilium %s failed with the substitutes %s (one of them may not fit this release: see labs/ciliumbuild/substitutes.go): %w",
					r, strings.Join(subs, "; "), err)
			}
			return fmt.Errorf("building Cilium %s: %w", r, err)
		}
		for _, p := range progs {
			if err := os.Rename(filepath.Join(binDir, filepath.Base(p.pkg)), filepath.Join(out, p.name)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := run("", agentPrograms); err != nil {
		return err
	}
	if err := run(operatorTags, []program{operator}); err != nil {
		return err
	}
	return os.RemoveAll(binDir)
}

// Link points binDir/cilium/<release> at a build (a symlink, replaced atomically).
func Link(binDir string, info Info) (string, error) {
	link := filepath.Join(binDir, BinDir(Release(info.Version)))
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return "", err
	}
	tmp := link + ".new"
	os.Remove(tmp)
	if err := os.Symlink(info.Dir, tmp); err != nil {
		return "", err
	}
	return link, os.Rename(tmp, link)
}

// BinDir is where a release's build is linked under v6lab's bin directory.
func BinDir(r Release) string { return filepath.Join("cilium", string(r)) }

func (b *Builder) timesFile(name string) string {
	return filepath.Join(b.CacheDir, "build-times", name)
}

func (b *Builder) lastTook(name string) time.Duration {
	data, err := os.ReadFile(b.timesFile(name))
	if err != nil {
		return 0
	}
	var s int
	if _, err := fmt.Sscanf(string(data), "%d", &s); err != nil {
		return 0
	}
	return time.Duration(s) * time.Second
}

func (b *Builder) saveTook(name string, d time.Duration) {
	f := b.timesFile(name)
	if os.MkdirAll(filepath.Dir(f), 0o755) == nil {
		os.WriteFile(f, []byte(fmt.Sprintf("%d\n", int(d.Seconds()))), 0o644)
	}
}

// ticker says every Tick that the build still runs: a rewritten line on a terminal,
// a timestamped line elsewhere (CI logs), as scripts/progress.sh does for the others.
func (b *Builder) ticker(name string, start time.Time) func() {
	if b.Out == nil {
		return func() {}
	}
	tick := b.Tick
	if tick == 0 {
		tick = 30 * time.Second
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-done:
				if b.TTY {
					fmt.Fprint(b.Out, "\r\033[K")
				}
				return
			case now := <-t.C:
				el := human.Duration(now.Sub(start).Round(time.Second))
				if b.TTY {
					fmt.Fprintf(b.Out, "\r\033[K  … %s: building %s", name, el)
				} else {
					fmt.Fprintf(b.Out, "%s  %s: building… %s\n", now.Format("15:04:05"), name, el)
				}
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func modModule(path, version string) module.Version {
	return module.Version{Path: path, Version: version}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// unservedLine is the line of go's error text that names the refused module.
func unservedLine(text string) string {
	for _, l := range strings.Split(text, "\n") {
		if unservedRE.MatchString(l) {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "go: "))
		}
	}
	return firstLine(text)
}

// copyTree copies a file or a directory tree, writable (the module cache is read-only
// and the agent writes into its BPF tree).
func copyTree(src, dst string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return copyFile(src, dst, st.Mode()|0o200)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return copyFile(p, target, info.Mode()|0o200)
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if strings.HasSuffix(dst, ".sh") {
		mode |= 0o755
	}
	return os.WriteFile(dst, data, mode.Perm())
}
