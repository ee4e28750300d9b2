package images

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"v6lab.dev/v6lab/fixtures"
)

// fakeClang stands in for clang-19: it preprocesses by printing the source, compiles
// by printing "object(<flags>): <source>" and counting the compile, and fails a
// compile whose source says "#error".
const fakeClang = `#!/bin/sh
for a; do [ "$a" = --version ] && { echo "fake clang 19"; exit 0; }; done
e=0 src= flags=
for a; do case $a in -E) e=1 ;; *.c) src=$a ;; -m*) flags="$flags $a" ;; esac; done
if [ $e = 1 ]; then cat "$src"; exit 0; fi
if grep -q '#error' "$src"; then echo "$src:1: error: boom" >&2; exit 3; fi
echo x >>"$FAKE_COMPILES"
printf 'object(%s): %s\n' "$flags" "$(cat "$src")"
`

// TestClangCache runs the agent image's clang wrapper (fixtures/images/cilium/
// clang-cache) against a fake clang: the loader's compile is cached by everything its
// object follows from, and nothing else is.
func TestClangCache(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	script, err := fixtures.Images.ReadFile("images/cilium/clang-cache")
	require.NoError(t, err)
	wrapper := filepath.Join(dir, "clang")
	require.NoError(t, os.WriteFile(wrapper, script, 0o755))
	real := filepath.Join(dir, "clang-19")
	require.NoError(t, os.WriteFile(real, []byte(fakeClang), 0o755))
	cache := filepath.Join(dir, "cache")
	require.NoError(t, os.Mkdir(cache, 0o755))
	src := filepath.Join(dir, "bpf_lxc.c")
	compiles := filepath.Join(dir, "compiles")

	run := func(env string, args ...string) (string, string, int) {
		cmd := exec.Command(bash, append([]string{wrapper}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "V6LAB_CLANG="+real, "FAKE_COMPILES="+compiles)
		if env != "" {
			cmd.Env = append(cmd.Env, env)
		}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		return out.String(), errb.String(), code
	}
	count := func() int {
		b, err := os.ReadFile(compiles)
		if os.IsNotExist(err) {
			return 0
		}
		require.NoError(t, err)
		return strings.Count(string(b), "x")
	}
	objects := func() []string {
		es, err := os.ReadDir(cache)
		require.NoError(t, err)
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		return names
	}
	env := "V6LAB_BPF_CACHE=" + cache
	loader := func(cpu string) []string {
		return []string{"-O2", "--target=bpf", "-mcpu=" + cpu, "-c", src, "-o", "-"}
	}

	require.NoError(t, os.WriteFile(src, []byte("v1"), 0o644))
	out, _, code := run(env, loader("v3")...)
	require.Equal(t, 0, code)
	assert.Equal(t, "object( -mcpu=v3): v1\n", out)
	assert.Equal(t, 1, count(), "a miss compiles")
	assert.Len(t, objects(), 1)

	out, _, code = run(env, loader("v3")...)
	require.Equal(t, 0, code)
	assert.Equal(t, "object( -mcpu=v3): v1\n", out, "a hit gives the same object")
	assert.Equal(t, 1, count(), "a hit does not compile")

	_, _, _ = run(env, loader("v2")...)
	assert.Equal(t, 2, count(), "another flag is another object")
	require.NoError(t, os.WriteFile(src, []byte("v2"), 0o644))
	out, _, _ = run(env, loader("v3")...)
	assert.Equal(t, "object( -mcpu=v3): v2\n", out, "another translation unit is another object")
	assert.Equal(t, 3, count())
	assert.Len(t, objects(), 3)

	// Without the cache, or for anything but the loader's compile: clang itself.
	require.NoError(t, os.WriteFile(src, []byte("v1"), 0o644))
	_, _, _ = run("", loader("v3")...)
	assert.Equal(t, 4, count(), "no cache directory: every compile runs")
	_, _, _ = run(env, "-O2", "-c", src, "-o", filepath.Join(dir, "x.o"))
	assert.Equal(t, 5, count(), "an object to a file is not cached")
	out, _, _ = run(env, "--version")
	assert.Equal(t, "fake clang 19\n", out)

	// A failed compile reaches the caller as clang's and leaves nothing in the cache.
	require.NoError(t, os.WriteFile(src, []byte("#error"), 0o644))
	out, stderr, code := run(env, loader("v3")...)
	assert.Equal(t, 3, code)
	assert.Contains(t, stderr, "error: boom")
	assert.Empty(t, out)
	assert.Len(t, objects(), 3, "nothing cached, no temporary file left")
}
