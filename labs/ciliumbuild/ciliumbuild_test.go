package ciliumbuild

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]Release{"1.19.5": "1.19.5", "v1.20.2": "1.20.2", " 1.18.4 ": "1.18.4"} {
		r, err := Parse(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, r)
	}
	for _, bad := range []string{"", "1.20", "v1.20.x", "1.20.2-rc.1", "../1.2.3"} {
		_, err := Parse(bad)
		assert.Error(t, err, bad)
	}
	r, _ := Parse("1.19.5")
	assert.Equal(t, "1.19", r.Minor())
	assert.Equal(t, "v1.19.5", r.Tag())
	assert.True(t, Less("1.9.9", "1.10.0"))
	assert.False(t, Less("1.20.2", "1.20.2"))
}

// A release's go.mod as the proxy serves it: replaces to a fork, to a directory of its
// own tree, and a plain require.
const releaseGoMod = `module github.com/cilium/cilium

go 1.24.0

require (
	github.com/osrg/gobgp/v3 v3.37.0
	k8s.io/apimachinery v0.33.3
)

// Using private fork of gobgp.
replace github.com/osrg/gobgp/v3 => github.com/cilium/gobgp/v3 v3.0.0-20250717193620-26a4abb75464

replace k8s.io/apimachinery => github.com/cilium/apimachinery v0.33.3-1

replace github.com/cilium/cilium/api/v2 => ./api/v2
`

func testModule(t *testing.T) *genModule {
	dir := t.TempDir()
	gomod := filepath.Join(dir, "v1.18.4.mod")
	require.NoError(t, os.WriteFile(gomod, []byte(releaseGoMod), 0o644))
	g, err := newGenModule("1.18.4", source{Dir: "/cache/github.com/cilium/cilium@v1.18.4", GoMod: gomod})
	require.NoError(t, err)
	return g
}

// The build module requires the release and carries its replace directives over (a
// dependency's replaces do not apply otherwise); a directory replace points into the
// release's tree in the module cache.
func TestBuildModuleCarriesTheReleasesReplaces(t *testing.T) {
	g := testModule(t)
	data, err := g.file()
	require.NoError(t, err)
	s := string(data)
	assert.Contains(t, s, "go 1.24.0")
	assert.Contains(t, s, "require github.com/cilium/cilium v1.18.4")
	assert.Contains(t, s, "github.com/osrg/gobgp/v3 => github.com/cilium/gobgp/v3 v3.0.0-20250717193620-26a4abb75464")
	assert.Contains(t, s, "k8s.io/apimachinery => github.com/cilium/apimachinery v0.33.3-1")
	assert.Contains(t, s, "github.com/cilium/cilium/api/v2 => /cache/github.com/cilium/cilium@v1.18.4/api/v2")
}

// go's error names the refused module; for a fork, the module the release replaces
// with it is the one the substitutes table knows.
func TestUnservedModule(t *testing.T) {
	g := testModule(t)
	for _, c := range []struct{ text, module, wanted string }{
		{"go: github.com/osrg/gobgp/v4@v4.6.1-0.20260630022313-d6dee8360046: reading https://proxy.example/github.com/osrg/gobgp/v4/@v/v4.6.1-0.20260630022313-d6dee8360046.mod: 403 Forbidden\n\tserver response: not available",
			"github.com/osrg/gobgp/v4", "github.com/osrg/gobgp/v4@v4.6.1-0.20260630022313-d6dee8360046"},
		{"github.com/cilium/cilium/operator imports\n\tsigs.k8s.io/mcs-api/controllers: sigs.k8s.io/mcs-api/controllers@v0.5.2: reading https://proxy.example/sigs.k8s.io/mcs-api/controllers/@v/v0.5.2.zip: 404 Not Found",
			"sigs.k8s.io/mcs-api/controllers", "sigs.k8s.io/mcs-api/controllers@v0.5.2"},
		{"go: k8s.io/apimachinery@v0.33.3 (replaced by github.com/cilium/apimachinery@v0.33.3-1): reading https://proxy.example/github.com/cilium/apimachinery/@v/v0.33.3-1.zip: 410 Gone",
			"k8s.io/apimachinery", "github.com/cilium/apimachinery@v0.33.3-1"},
		{"go: github.com/cilium/gobgp/v3@v3.0.0-20250717193620-26a4abb75464: reading https://proxy.example/github.com/cilium/gobgp/v3/@v/v3.0.0-20250717193620-26a4abb75464.zip: 403 Forbidden",
			"github.com/osrg/gobgp/v3", "github.com/cilium/gobgp/v3@v3.0.0-20250717193620-26a4abb75464"},
	} {
		m, w, ok := g.unserved(c.text)
		require.True(t, ok, c.text)
		assert.Equal(t, c.module, m)
		assert.Equal(t, c.wanted, w)
	}
	// A network failure is not a refusal: no substitute is tried for it.
	_, _, ok := g.unserved("go: github.com/x/y@v1.0.0: reading https://proxy.example/x: dial tcp: i/o timeout")
	assert.False(t, ok)
}

// Each kind of substitute changes the build module as it says.
func TestSubstitutesApplied(t *testing.T) {
	g := testModule(t)
	for _, m := range []string{"k8s.io/apimachinery", "github.com/osrg/gobgp/v4", "sigs.k8s.io/mcs-api/controllers"} {
		s, ok := substituteFor(m)
		require.True(t, ok, m)
		g.apply(s)
	}
	dir := t.TempDir()
	require.NoError(t, g.write(dir))
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	require.NoError(t, err)
	s := string(data)
	assert.NotContains(t, s, "cilium/apimachinery", "upstream instead of the fork")
	assert.Contains(t, s, "cilium/gobgp", "a fork the proxy serves is kept")
	assert.Contains(t, s, "github.com/osrg/gobgp/v4 => github.com/osrg/gobgp/v4 v4.8.0")
	assert.Contains(t, s, "sigs.k8s.io/mcs-api/controllers => ./stub/sigs_k8s_io_mcs-api_controllers")
	stub, err := os.ReadFile(filepath.Join(dir, "stub", "sigs_k8s_io_mcs-api_controllers", "go.mod"))
	require.NoError(t, err)
	assert.Contains(t, string(stub), "module sigs.k8s.io/mcs-api/controllers")
	_, err = os.ReadFile(filepath.Join(dir, "stub", "sigs_k8s_io_mcs-api_controllers", "stub.go"))
	require.NoError(t, err)
}

// Every entry of the table says what stands in (exactly one way) and why.
func TestSubstitutesTable(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Substitutes {
		n := 0
		for _, set := range []bool{s.Version != "", s.Upstream, s.Stub != ""} {
			if set {
				n++
			}
		}
		assert.Equal(t, 1, n, "%s: exactly one of Version, Upstream, Stub", s.Module)
		assert.NotEmpty(t, s.Why, s.Module)
		assert.False(t, seen[s.Module], "%s twice", s.Module)
		seen[s.Module] = true
	}
}

// The key changes with the release and with the table, and needs no network.
func TestKey(t *testing.T) {
	b := &Builder{CacheDir: t.TempDir(), goVersion: "go1.26.8"}
	k1, err := b.Key(context.Background(), "1.19.5")
	require.NoError(t, err)
	k2, _ := b.Key(context.Background(), "1.19.3")
	assert.NotEqual(t, k1, k2)
	saved := Substitutes
	t.Cleanup(func() { Substitutes = saved })
	Substitutes = append(append([]Substitute{}, saved...), Substitute{Module: "example.com/m", Version: "v1.0.0", Why: "test"})
	k3, _ := b.Key(context.Background(), "1.19.5")
	assert.NotEqual(t, k1, k3)
}

// A release the proxy refuses says which and what the user can do.
func TestNotServedError(t *testing.T) {
	e := &NotServedError{Release: "1.20.3", Module: Module + "@v1.20.3", Detail: "403 Forbidden"}
	assert.Contains(t, e.Error(), "does not serve github.com/cilium/cilium@v1.20.3")
	assert.Contains(t, e.Error(), "--images online")
	e = &NotServedError{Release: "1.21.0", Module: "example.com/fork@v1.0.0", Detail: "404", NoSubstitute: true}
	assert.Contains(t, e.Error(), "labs/ciliumbuild/substitutes.go has no stand-in")
}

// Progress: a timestamped line per tick without a terminal, the time it took last time.
func TestProgressLines(t *testing.T) {
	var out bytes.Buffer
	b := &Builder{CacheDir: t.TempDir(), Out: &out, Tick: 20 * time.Millisecond}
	b.saveTook("cilium-1.19.5", 373*time.Second)
	assert.Equal(t, 373*time.Second, b.lastTook("cilium-1.19.5"))
	stop := b.ticker("cilium-1.19.5", time.Now())
	time.Sleep(70 * time.Millisecond)
	stop()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.GreaterOrEqual(t, len(lines), 2)
	assert.Contains(t, lines[0], "cilium-1.19.5: building… ")
}

// List reads the complete builds of the cache, newest release first; a build in
// progress (.tmp) is not one.
func TestList(t *testing.T) {
	cache := t.TempDir()
	for _, d := range []string{"1.19.3-aaaa", "1.20.2-bbbb", "1.19.5-cccc"} {
		require.NoError(t, os.MkdirAll(filepath.Join(cache, "cilium", d), 0o755))
		v, k, _ := strings.Cut(d, "-")
		require.NoError(t, os.WriteFile(filepath.Join(cache, "cilium", d, InfoFile), []byte(`{"version":"`+v+`","key":"`+k+`"}`), 0o644))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(cache, "cilium", "1.20.9-dddd.tmp"), 0o755))
	got, err := List(cache)
	require.NoError(t, err)
	var vs []string
	for _, i := range got {
		vs = append(vs, i.Version)
	}
	assert.Equal(t, []string{"1.20.2", "1.19.5", "1.19.3"}, vs)
}
