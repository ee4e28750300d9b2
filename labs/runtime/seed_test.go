package runtime

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A node's store starts as the seeded store: layer files shared (one inode), the bolt
// databases its containerd writes in place its own, a store a node already has never
// replaced.
func TestLinkSeed(t *testing.T) {
	seed := t.TempDir()
	layer := filepath.Join(seed, "io.containerd.snapshotter.v1.overlayfs", "snapshots", "1", "fs", "usr", "bin")
	require.NoError(t, os.MkdirAll(layer, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(layer, "clang"), []byte("elf"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(seed, "io.containerd.snapshotter.v1.overlayfs", "metadata.db"), []byte("bolt"), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(seed, "io.containerd.metadata.v1.bolt"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(seed, "io.containerd.metadata.v1.bolt", "meta.db"), []byte("bolt"), 0o644))

	dst := filepath.Join(t.TempDir(), "agent1", "containerd")
	require.NoError(t, linkSeed(context.Background(), seed, dst))
	ino := func(p string) uint64 {
		info, err := os.Stat(p)
		require.NoError(t, err)
		return info.Sys().(*syscall.Stat_t).Ino
	}
	rel := "io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs/usr/bin/clang"
	assert.Equal(t, ino(filepath.Join(seed, rel)), ino(filepath.Join(dst, rel)), "a layer file is linked, not copied")
	for _, db := range []string{"io.containerd.snapshotter.v1.overlayfs/metadata.db", "io.containerd.metadata.v1.bolt/meta.db"} {
		assert.NotEqual(t, ino(filepath.Join(seed, db)), ino(filepath.Join(dst, db)), "%s is the node's own copy", db)
		data, err := os.ReadFile(filepath.Join(dst, db))
		require.NoError(t, err)
		assert.Equal(t, "bolt", string(data))
	}
	info, err := os.Stat(filepath.Join(dst, "io.containerd.metadata.v1.bolt"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), info.Mode().Perm(), "directories keep their modes")

	// A node's own store (the lab is up already) is left as it is.
	require.NoError(t, os.WriteFile(filepath.Join(dst, "io.containerd.metadata.v1.bolt", "meta.db"), []byte("node's own"), 0o644))
	require.NoError(t, linkSeed(context.Background(), seed, dst))
	data, err := os.ReadFile(filepath.Join(dst, "io.containerd.metadata.v1.bolt", "meta.db"))
	require.NoError(t, err)
	assert.Equal(t, "node's own", string(data))
}

// The seeded store's key follows the node image and the archives, in their order.
func TestSeedDir(t *testing.T) {
	a := seedDir("/c", "v6lab/node:1", []string{"p.tar", "c.tar"})
	assert.Equal(t, "/c/containerd", filepath.Dir(a))
	assert.Equal(t, a, seedDir("/c", "v6lab/node:1", []string{"p.tar", "c.tar"}))
	assert.NotEqual(t, a, seedDir("/c", "v6lab/node:2", []string{"p.tar", "c.tar"}))
	assert.NotEqual(t, a, seedDir("/c", "v6lab/node:1", []string{"c.tar", "p.tar"}))
	assert.NotEqual(t, a, seedDir("/c", "v6lab/node:1", []string{"p.tar"}))
}
