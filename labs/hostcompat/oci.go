package hostcompat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// decode keeps numbers exact: rlimits can be 2^64-1, which float64 cannot hold.
func decode(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	return d.Decode(v)
}

// Limits is what the calling process may grant to a container it starts.
type Limits struct {
	// Bounding is the host's capability bounding set.
	Bounding uint64
	// OOMScoreAdj is the caller's own oom_score_adj: lowering it below that needs
	// CAP_SYS_RESOURCE.
	OOMScoreAdj int
	// HardLimits maps an rlimit name (RLIMIT_NOFILE, ...) to the caller's hard limit:
	// raising a hard limit needs CAP_SYS_RESOURCE.
	HardLimits map[string]uint64
}

// Change is one thing FilterProcess altered, for the wrapper's log.
type Change string

// FilterSpec rewrites an OCI runtime spec (a bundle's config.json) so that runc can
// start it on this host. Unknown fields are kept as they are.
func FilterSpec(data []byte, lim Limits) ([]byte, []Change, error) {
	var spec map[string]any
	if err := decode(data, &spec); err != nil {
		return nil, nil, fmt.Errorf("hostcompat: bundle config: %w", err)
	}
	proc, _ := spec["process"].(map[string]any)
	if proc == nil {
		return data, nil, nil
	}
	changes := filterProcess(proc, lim)
	if len(changes) == 0 {
		return data, nil, nil
	}
	out, err := json.Marshal(spec)
	return out, changes, err
}

// FilterProcess does the same for a process file (`runc exec --process FILE`).
func FilterProcess(data []byte, lim Limits) ([]byte, []Change, error) {
	var proc map[string]any
	if err := decode(data, &proc); err != nil {
		return nil, nil, fmt.Errorf("hostcompat: process file: %w", err)
	}
	changes := filterProcess(proc, lim)
	if len(changes) == 0 {
		return data, nil, nil
	}
	out, err := json.Marshal(proc)
	return out, changes, err
}

func filterProcess(proc map[string]any, lim Limits) []Change {
	var changes []Change
	if caps, ok := proc["capabilities"].(map[string]any); ok {
		for _, set := range []string{"bounding", "effective", "inheritable", "permitted", "ambient"} {
			list, ok := caps[set].([]any)
			if !ok {
				continue
			}
			kept := make([]any, 0, len(list))
			for _, c := range list {
				name, _ := c.(string)
				n := CapNumber(name)
				if n >= 0 && n < 64 && lim.Bounding&(1<<uint(n)) == 0 {
					changes = append(changes, Change(fmt.Sprintf("drop %s from %s", name, set)))
					continue
				}
				kept = append(kept, c)
			}
			caps[set] = kept
		}
	}
	if n, ok := proc["oomScoreAdj"].(json.Number); ok {
		if v, err := n.Int64(); err == nil && int(v) < lim.OOMScoreAdj {
			changes = append(changes, Change(fmt.Sprintf("raise oomScoreAdj %d to %d", v, lim.OOMScoreAdj)))
			proc["oomScoreAdj"] = lim.OOMScoreAdj
		}
	}
	if rl, ok := proc["rlimits"].([]any); ok {
		for _, r := range rl {
			m, ok := r.(map[string]any)
			if !ok {
				continue
			}
			typ, _ := m["type"].(string)
			hard, ok := lim.HardLimits[typ]
			if !ok {
				continue
			}
			for _, k := range []string{"hard", "soft"} {
				n, ok := m[k].(json.Number)
				if !ok {
					continue
				}
				if v, err := strconv.ParseUint(string(n), 10, 64); err == nil && v > hard {
					changes = append(changes, Change(fmt.Sprintf("clamp %s %s %d to %d", typ, k, v, hard)))
					m[k] = hard
				}
			}
		}
	}
	return changes
}
