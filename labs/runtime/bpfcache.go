package runtime

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"v6lab.dev/v6lab/labs/render"
)

// The machine's cache of compiled datapath objects (the offline Cilium image's
// clang-cache writes it; every node of every lab binds it). It is pruned to
// bpfCacheLow when it grows past bpfCacheHigh, least recently used first; an object
// used in the last bpfCacheRecent is never removed (a running lab may read it now).
const (
	bpfCacheHigh   = 512 << 20
	bpfCacheLow    = 256 << 20
	bpfCacheRecent = time.Hour
)

// BPFCache is the machine's datapath object cache.
func BPFCache() string { return filepath.Join(CacheDir(), "bpf") }

// linkBPFCache makes the run directory's bpf-cache a link to the machine's cache (a
// directory made there earlier, e.g. by a stock deploy, is left as it is) and prunes
// the cache.
func linkBPFCache(runDir string) (string, error) {
	cache := BPFCache()
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	link := filepath.Join(runDir, render.BPFCacheDir)
	if st, err := os.Lstat(link); err == nil && st.Mode()&fs.ModeSymlink == 0 {
		return "the run directory's own", nil
	} else if err == nil {
		if dst, err := os.Readlink(link); err == nil && dst == cache {
			return pruneBPFCache(cache, time.Now())
		}
		if err := os.Remove(link); err != nil {
			return "", err
		}
	}
	if err := os.Symlink(cache, link); err != nil {
		return "", err
	}
	return pruneBPFCache(cache, time.Now())
}

// pruneBPFCache removes objects, least recently used first, while the cache holds more
// than bpfCacheLow, once it has grown past bpfCacheHigh; and what a compile left
// behind (its temporary file) an hour ago. It says what the cache holds.
func pruneBPFCache(dir string, now time.Time) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	type obj struct {
		path string
		size int64
		used time.Time
	}
	var objs []obj
	var total int64
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), ".") {
			if now.Sub(info.ModTime()) > bpfCacheRecent {
				_ = os.Remove(p)
			}
			continue
		}
		objs = append(objs, obj{p, info.Size(), info.ModTime()})
		total += info.Size()
	}
	removed := 0
	if total > bpfCacheHigh {
		sort.Slice(objs, func(i, j int) bool { return objs[i].used.Before(objs[j].used) })
		for _, o := range objs {
			if total <= bpfCacheLow || now.Sub(o.used) < bpfCacheRecent {
				break
			}
			if err := os.Remove(o.path); err != nil {
				return "", err
			}
			total -= o.size
			removed++
		}
	}
	msg := fmt.Sprintf("BPF object cache %d objects, %d MiB", len(objs)-removed, total>>20)
	if removed > 0 {
		msg += fmt.Sprintf(" (%d least recently used removed)", removed)
	}
	return msg, nil
}
