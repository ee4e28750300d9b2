package lab

import (
	"fmt"
	"os"
	"strings"

	"v6lab.dev/v6lab/topologies"
)

// readFile reads a spec path; "embedded:<name>" names a spec shipped in the binary.
func readFile(path string) ([]byte, error) {
	if name, ok := strings.CutPrefix(path, "embedded:"); ok {
		data, err := topologies.Get(name)
		if err != nil {
			return nil, fmt.Errorf("no embedded lab %q (have: %s)", name, strings.Join(topologies.Names(), ", "))
		}
		return data, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading lab spec: %w", err)
	}
	return data, nil
}
