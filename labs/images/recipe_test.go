package images

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"v6lab.dev/v6lab/fixtures"
)

func recipes() fstest.MapFS {
	return fstest.MapFS{
		"images/base/packages":   {Data: []byte("# c\niproute2\n\ntcpdump\n")},
		"images/frr/Dockerfile":  {Data: []byte("FROM x\n")},
		"images/host/Dockerfile": {Data: []byte("FROM y\n")},
		"probe/main.go":          {Data: []byte("package main\n")},
	}
}

func TestKeyIsStableAndFollowsContent(t *testing.T) {
	fsys := recipes()
	k1, err := Key(fsys, "frr")
	require.NoError(t, err)
	k2, _ := Key(fsys, "frr")
	assert.Equal(t, k1, k2)
	assert.Len(t, k1, 16)

	host, _ := Key(fsys, "host")
	fsys["images/frr/Dockerfile"] = &fstest.MapFile{Data: []byte("FROM x\nRUN true\n")}
	k3, _ := Key(fsys, "frr")
	assert.NotEqual(t, k1, k3, "a changed recipe changes its key")
	host2, _ := Key(fsys, "host")
	assert.Equal(t, host, host2, "other recipes keep theirs")

	fsys["images/base/packages"] = &fstest.MapFile{Data: []byte("iproute2\n")}
	k4, _ := Key(fsys, "frr")
	host3, _ := Key(fsys, "host")
	assert.NotEqual(t, k3, k4, "a changed base changes the images on top")
	assert.NotEqual(t, host2, host3)

	_, err = Key(fsys, "nope")
	assert.Error(t, err)
}

// Every Cilium release is built the same way: its build and image names follow from
// the release, its two recipes share one Dockerfile each.
func TestCiliumBuilds(t *testing.T) {
	c, err := CiliumFor("v1.18.4")
	require.NoError(t, err)
	assert.Equal(t, CiliumBuild{Version: "1.18.4", BinDir: "cilium/1.18.4", Agent: "cilium-1.18.4", Operator: "cilium-operator-1.18.4"}, c)
	assert.Equal(t, "cilium/1.18.4/chart", c.Chart())
	k18, err := Key(fixtures.Images, c.Agent)
	require.NoError(t, err)
	c19, err := CiliumFor("1.19.5")
	require.NoError(t, err)
	k19, err := Key(fixtures.Images, c19.Agent)
	require.NoError(t, err)
	assert.NotEqual(t, k18, k19, "the release is part of the key")
	op := recipe(c19.Operator)
	require.NotNil(t, op)
	assert.Equal(t, "cilium-operator", op.dir())
	assert.Equal(t, []string{"cilium/1.19.5/cilium-operator-generic"}, op.Binaries)
	assert.Contains(t, recipe(c19.Agent).Binaries, "cilium/1.19.5/bpf")
	refs, err := Refs(fixtures.Images, c19)
	require.NoError(t, err)
	assert.Equal(t, Ref(c19.Agent, k19), refs[c19.Agent])
	assert.True(t, Current(fixtures.Images, refs[c19.Operator]))
	assert.False(t, Current(fixtures.Images, Ref(c19.Operator, "0000000000000000")))
	for _, bad := range []string{"1.19", "cilium-1.19", "1.19.5-rc.1"} {
		_, err = CiliumFor(bad)
		assert.Error(t, err, bad)
	}
	assert.Nil(t, recipe("cilium-1.19"), "not a release")
}

func TestShippedRecipes(t *testing.T) {
	for _, r := range Recipes {
		k, err := Key(fixtures.Images, r.Name)
		require.NoError(t, err, r.Name)
		assert.NotEmpty(t, k)
	}
	pkgs, err := Packages(fixtures.Images, "base")
	require.NoError(t, err)
	assert.Contains(t, pkgs, "iproute2")
	pkgs, err = Packages(recipes(), "base")
	require.NoError(t, err)
	assert.Equal(t, []string{"iproute2", "tcpdump"}, pkgs)
}

func TestMirrorFromAptSources(t *testing.T) {
	t.Setenv("V6LAB_DEBIAN_MIRROR", "")
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "sources.list.d"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sources.list.d", "debian.sources"), []byte(
		"Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"+
			"Types: deb deb-src\n# a comment: here\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"), 0o644))
	m, err := Mirror(dir, "bookworm")
	require.NoError(t, err)
	assert.Equal(t, "http://mirror.example/debian", m)

	dir2 := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir2, "sources.list"), []byte(
		"# x\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/one bookworm main\n"), 0o644))
	m, err = Mirror(dir2, "bookworm")
	require.NoError(t, err)
	assert.Equal(t, "http://mirror.example/one", m)

	_, err = Mirror(t.TempDir(), "bookworm")
	assert.ErrorContains(t, err, "V6LAB_DEBIAN_MIRROR")

	t.Setenv("V6LAB_DEBIAN_MIRROR", "http://mirror.example/override")
	m, _ = Mirror(dir, "bookworm")
	assert.Equal(t, "http://mirror.example/override", m)
}

func TestProgramSourcesAreInTheKey(t *testing.T) {
	fsys := recipes()
	k1, err := Key(fsys, "host")
	require.NoError(t, err)
	fsys["probe/main.go"] = &fstest.MapFile{Data: []byte("package main // changed\n")}
	k2, _ := Key(fsys, "host")
	assert.NotEqual(t, k1, k2, "a changed probe rebuilds the image that carries it")
	f1, _ := Key(recipes(), "frr")
	f2, _ := Key(fsys, "frr")
	assert.Equal(t, f1, f2, "images without the probe keep their key")
}

// The node image's versions file names what the tools modules build.
func TestNodeVersionsMatchTheToolsModules(t *testing.T) {
	var versions []byte
	for _, r := range []string{"node", "coredns"} {
		v, err := fs.ReadFile(fixtures.Images, "images/"+r+"/versions")
		require.NoError(t, err)
		versions = append(versions, v...)
	}
	k8s, err := os.ReadFile("../../tools/k8s/go.mod")
	require.NoError(t, err)
	etcd, err := os.ReadFile("../../tools/etcd/go.mod")
	require.NoError(t, err)
	coredns, err := os.ReadFile("../../tools/coredns/go.mod")
	require.NoError(t, err)
	for _, l := range strings.Split(string(versions), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 || strings.HasPrefix(l, "#") {
			continue
		}
		switch f[0] {
		case "kubernetes":
			assert.True(t, strings.Contains(string(k8s), "k8s.io/kubernetes "+f[1]), "tools/k8s requires kubernetes %s", f[1])
		case "etcd":
			assert.True(t, strings.Contains(string(etcd), "go.etcd.io/etcd/server/v3 "+f[1]), "tools/etcd requires etcd %s", f[1])
		case "coredns":
			assert.True(t, strings.Contains(string(coredns), "github.com/coredns/coredns "+f[1]), "tools/coredns requires coredns %s", f[1])
		default:
			t.Errorf("unknown program %q in versions", f[0])
		}
	}
}

// An interrupted debootstrap leaves /proc (and more) mounted in its rootfs: those
// mounts are found, deepest first, before the tree is removed; nothing outside it is.
func TestMountsUnder(t *testing.T) {
	info := `22 1 8:1 / / rw,relatime - ext4 /dev/vda rw
101 22 0:5 / /tmp/v6lab-rootfs-1/proc rw - proc proc rw
102 101 0:6 / /tmp/v6lab-rootfs-1/proc/sys/fs/binfmt_misc rw - binfmt_misc binfmt_misc rw
103 22 0:7 / /tmp/v6lab-rootfs-1/dev/pts rw - devpts devpts rw
104 22 0:8 / /tmp/v6lab-rootfs-10/proc rw - proc proc rw
105 22 0:9 / /tmp/v6lab-rootfs-1/with\040space rw - tmpfs tmpfs rw
`
	got := mountsUnder(info, "/tmp/v6lab-rootfs-1")
	assert.Equal(t, []string{"/tmp/v6lab-rootfs-1/proc/sys/fs/binfmt_misc", "/tmp/v6lab-rootfs-1/with space",
		"/tmp/v6lab-rootfs-1/dev/pts", "/tmp/v6lab-rootfs-1/proc"}, got)
}

// An image whose binary is missing names the make command that builds it.
func TestBuildHint(t *testing.T) {
	for rel, want := range map[string]string{
		"k8s/kubelet":                           "make k8s",
		"coredns/coredns":                       "make k8s",
		"metallb/controller":                    "make metallb",
		"cilium/1.20.2/cilium-operator-generic": "make cilium CILIUM_VERSIONS=1.20.2",
	} {
		assert.Equal(t, want, buildHint(rel), rel)
	}
}
