package runtime

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"v6lab.dev/v6lab/fixtures"
	"v6lab.dev/v6lab/labs/images"
)

func TestArchiveRef(t *testing.T) {
	for file, want := range map[string]string{
		"v6lab_cilium-1.20.2_7cd8bb9d8b3082d6.tar": "v6lab/cilium-1.20.2:7cd8bb9d8b3082d6",
		"v6lab_host_18adf229d0b1c548.tar":          "v6lab/host:18adf229d0b1c548",
	} {
		got, ok := archiveRef(file)
		assert.True(t, ok, file)
		assert.Equal(t, want, got)
		assert.Equal(t, file, archiveName(got), "archiveName undoes it")
	}
	for _, bad := range []string{"host.tar", "v6lab_host.tar", "notes.txt"} {
		_, ok := archiveRef(bad)
		assert.False(t, ok, bad)
	}
}

// Stale archives and the seeded stores that hold one go; the current ones stay, and
// so does a store being made.
func TestPruneCacheKeepsOnlyCurrent(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	cache := CacheDir()
	cur, err := images.RefOf(fixtures.Images, "host")
	require.NoError(t, err)
	stale := "v6lab/host:0000000000000000"
	arch := filepath.Join(cache, "archives")
	require.NoError(t, os.MkdirAll(arch, 0o755))
	for _, r := range []string{cur, stale} {
		require.NoError(t, os.WriteFile(filepath.Join(arch, archiveName(r)), nil, 0o644))
	}
	store := func(name, mark string) string {
		dir := filepath.Join(cache, "containerd", name)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		if mark != "-" {
			require.NoError(t, os.WriteFile(filepath.Join(dir, seedMark), []byte(mark), 0o644))
		}
		return dir
	}
	good := store("a", archiveName(cur)+"\nregistry.k8s.io_pause_3.10.tar\n")
	old := store("b", archiveName(stale)+"\n")
	unlisted := store("c", "")
	making := store("d.tmp", "-")
	removed, err := PruneCache(fixtures.Images)
	require.NoError(t, err)
	assert.FileExists(t, filepath.Join(arch, archiveName(cur)))
	assert.NoFileExists(t, filepath.Join(arch, archiveName(stale)))
	assert.DirExists(t, good)
	assert.DirExists(t, making)
	assert.NoDirExists(t, old)
	assert.NoDirExists(t, unlisted)
	assert.Len(t, removed, 3)
}
