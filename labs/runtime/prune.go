package runtime

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"v6lab.dev/v6lab/labs/images"
)

// PruneCache removes from v6lab's cache what no lab can use any more: image archives
// whose image is not its recipe's current build (a changed recipe, or a release's
// image from before), and the nodes' seeded image stores holding such an archive (or
// from before the stores listed their archives). A running lab keeps working: its
// nodes' stores are their own copies (hard links), and its images stay in Docker. It
// returns what it removed.
func PruneCache(fsys fs.FS) ([]string, error) {
	cache := CacheDir()
	var removed []string
	archives, _ := filepath.Glob(filepath.Join(cache, "archives", "*.tar"))
	for _, a := range archives {
		if ref, ok := archiveRef(filepath.Base(a)); ok && images.Current(fsys, ref) {
			continue
		}
		if err := os.Remove(a); err != nil && !os.IsNotExist(err) {
			return removed, err
		}
		removed = append(removed, a)
	}
	stores, _ := os.ReadDir(filepath.Join(cache, "containerd"))
	for _, st := range stores {
		dir := filepath.Join(cache, "containerd", st.Name())
		// A store being made (.tmp) may be another up's, under way.
		if !st.IsDir() || strings.HasSuffix(st.Name(), ".tmp") || seedCurrent(fsys, dir) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			return removed, err
		}
		removed = append(removed, dir)
	}
	return removed, nil
}

// archiveRef is the image reference an archive's name stands for
// (v6lab_cilium-1.20.2_7cd8bb9d8b3082d6.tar: v6lab/cilium-1.20.2:7cd8bb9d8b3082d6).
func archiveRef(file string) (string, bool) {
	base, ok := strings.CutSuffix(file, ".tar")
	if !ok {
		return "", false
	}
	i := strings.LastIndex(base, "_")
	j := strings.Index(base, "_")
	if i <= j || j < 0 {
		return "", false
	}
	return base[:j] + "/" + base[j+1:i] + ":" + base[i+1:], true
}

// seedCurrent says whether a seeded store is complete and holds only current images.
// Only v6lab's images are judged; the pause image and others are kept.
func seedCurrent(fsys fs.FS, dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, seedMark))
	if err != nil || strings.TrimSpace(string(data)) == "" {
		return false
	}
	for _, a := range strings.Fields(string(data)) {
		ref, ok := archiveRef(a)
		if !ok || (strings.HasPrefix(ref, images.Repo) && !images.Current(fsys, ref)) {
			return false
		}
	}
	return true
}
