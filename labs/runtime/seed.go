package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	nodeconfig "v6lab.dev/v6lab/fixtures/node/config"
	"v6lab.dev/v6lab/labs/atomicfile"
	"v6lab.dev/v6lab/labs/xexec"
)

// A seeded containerd store: the lab's images imported once, by a container of the
// node image (`v6lab-node seed`), into a directory of v6lab's cache keyed by the node
// image and the archives; each node's store starts as a linked copy of it. Without it
// every node imports the same archives at the same time when it starts (measured on 2
// cores: the Cilium agent's 0.7 GB took each of 3 nodes 38-41 s). Image layers are
// content-addressed and never written again once committed: the nodes share their
// files (hard links) as they share the archives; what containerd writes in place (its
// bolt databases) each node gets a copy of.

// seedDir is where the seeded store of these archives (in import order) for this node
// image is cached.
func seedDir(cacheDir, nodeImage string, archives []string) string {
	h := sha256.New()
	fmt.Fprintf(h, "node %s\n", nodeImage)
	for _, a := range archives {
		fmt.Fprintf(h, "archive %s\n", a)
	}
	return filepath.Join(cacheDir, "containerd", hex.EncodeToString(h.Sum(nil))[:16])
}

// seedMark is the file a complete seeded store has (a store interrupted while it was
// being made has none and is made again).
const seedMark = "v6lab-seed-complete"

// seedContainerd makes the seeded store of the lab's archives (labImages, in the order
// its import-order file gives) unless the cache has it, and returns its directory.
func seedContainerd(ctx context.Context, nodeImage, labImages string, refs []string) (string, error) {
	archives := make([]string, len(refs))
	for i, r := range refs {
		archives[i] = archiveName(r)
	}
	dir := seedDir(CacheDir(), nodeImage, archives)
	if _, err := os.Stat(filepath.Join(dir, seedMark)); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.MkdirAll(tmp, 0o711); err != nil {
		return "", err
	}
	name := "v6lab-seed-" + filepath.Base(dir)
	_, _ = docker(ctx, time.Minute, "rm", "-f", name) // a leftover of an interrupted seed
	args := []string{"run", "--rm", "--name", name, "--privileged", "--network", "none",
		"--label", "v6lab.dev/seed=" + filepath.Base(dir),
		"-v", tmp + ":/var/lib/containerd", "-v", labImages + ":" + nodeconfig.ImagesDir + ":ro",
		nodeImage, "seed"}
	if out, err := docker(ctx, 15*time.Minute, args...); err != nil {
		_, _ = docker(context.WithoutCancel(ctx), time.Minute, "rm", "-f", name)
		return "", fmt.Errorf("seeding the nodes' image store: %w: %s", err, out)
	}
	// The mark lists the archives the store holds: PruneCache removes a store one of
	// whose images is stale.
	if err := atomicfile.Write(filepath.Join(tmp, seedMark), []byte(strings.Join(archives, "\n")+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	return dir, os.Rename(tmp, dir)
}

// linkSeed gives a node's store (dst, empty or missing) the seeded store's content:
// directories and their attributes copied, files hard-linked, except the bolt
// databases containerd writes in place, which are copied. Another file system than the
// cache's: everything copied.
func linkSeed(ctx context.Context, seed, dst string) error {
	if entries, err := os.ReadDir(dst); err == nil && len(entries) > 0 {
		return nil // a node's own store (the lab is up already): never replaced
	}
	if err := os.MkdirAll(dst, 0o711); err != nil {
		return err
	}
	// GNU cp keeps owners, modes and extended attributes (overlay's opaque
	// directories carry one); --link makes hard links of the files.
	if _, err := xexec.Run(ctx, xexec.Cmd{Name: "cp", Args: []string{"-a", "--link", seed + "/.", dst + "/"}, Timeout: 5 * time.Minute}); err != nil {
		if _, err := xexec.Run(ctx, xexec.Cmd{Name: "cp", Args: []string{"-a", seed + "/.", dst + "/"}, Timeout: 10 * time.Minute}); err != nil {
			return err
		}
	}
	return filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".db") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return atomicfile.Write(p, data, info.Mode().Perm())
	})
}
