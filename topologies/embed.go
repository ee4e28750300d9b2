// Package topologies embeds the lab specs shipped with v6lab. default.yaml is the lab
// every command uses when no --spec is given.
package topologies

import (
	"embed"
	"io/fs"
	"sort"
	"strings"
)

//go:embed *.yaml
var files embed.FS

// DefaultName is the embedded lab used when no spec is given.
const DefaultName = "default"

// Get returns the embedded spec with that name (without .yaml).
func Get(name string) ([]byte, error) { return files.ReadFile(name + ".yaml") }

// Names lists the embedded specs.
func Names() []string {
	entries, _ := fs.ReadDir(files, ".")
	var out []string
	for _, e := range entries {
		out = append(out, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(out)
	return out
}
