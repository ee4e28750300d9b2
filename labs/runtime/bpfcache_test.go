package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPruneBPFCache: past the high mark the least recently used objects go until the
// low mark, never one used in the last hour; a compile's stale temporary file goes.
func TestPruneBPFCache(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	mk := func(name string, size int64, used time.Time) {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		require.NoError(t, err)
		require.NoError(t, f.Truncate(size)) // sparse: sizes without the disk
		require.NoError(t, f.Close())
		require.NoError(t, os.Chtimes(p, used, used))
	}
	// 6 × 100 MiB = 600 MiB > 512: the three oldest go (300 MiB left > 256), then the
	// fourth would, but it was used ten minutes ago.
	for i := range 6 {
		age := time.Duration(6-i) * 24 * time.Hour
		if i >= 3 {
			age = time.Duration(6-i) * 10 * time.Minute
		}
		mk(fmt.Sprintf("obj%d.o", i), 100<<20, now.Add(-age))
	}
	mk(".obj9.o.abc", 10, now.Add(-2*time.Hour))
	mk(".obj8.o.def", 10, now.Add(-time.Minute))
	msg, err := pruneBPFCache(dir, now)
	require.NoError(t, err)
	assert.Equal(t, "BPF object cache 3 objects, 300 MiB (3 least recently used removed)", msg)
	for i, want := range []bool{false, false, false, true, true, true} {
		_, err := os.Stat(filepath.Join(dir, fmt.Sprintf("obj%d.o", i)))
		assert.Equal(t, want, err == nil, "obj%d.o", i)
	}
	_, err = os.Stat(filepath.Join(dir, ".obj9.o.abc"))
	assert.True(t, os.IsNotExist(err), "a stale temporary file is removed")
	_, err = os.Stat(filepath.Join(dir, ".obj8.o.def"))
	assert.NoError(t, err, "a compile's temporary file in use is kept")

	// Under the high mark nothing goes.
	msg, err = pruneBPFCache(dir, now)
	require.NoError(t, err)
	assert.Equal(t, "BPF object cache 3 objects, 300 MiB", msg)
}

// TestLinkBPFCache: the run directory's bpf-cache is a link to the machine's cache;
// a directory of the run directory's own is left alone.
func TestLinkBPFCache(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	run := t.TempDir()
	_, err := linkBPFCache(run)
	require.NoError(t, err)
	dst, err := os.Readlink(filepath.Join(run, "bpf-cache"))
	require.NoError(t, err)
	assert.Equal(t, BPFCache(), dst)
	_, err = linkBPFCache(run) // again: unchanged
	require.NoError(t, err)

	own := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(own, "bpf-cache"), 0o755))
	msg, err := linkBPFCache(own)
	require.NoError(t, err)
	assert.Equal(t, "the run directory's own", msg)
}
