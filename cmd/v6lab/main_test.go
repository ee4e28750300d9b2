package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestPlanPrintsTheTree(t *testing.T) {
	code, out, _ := runCLI(t, "plan")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "2001:db8::/48")
	assert.Contains(t, out, "Worker nodes: agent1 2001:db8:0:1::11")
}

func TestPlanJSON(t *testing.T) {
	code, out, _ := runCLI(t, "plan", "--json", "--spec", "embedded:metallb")
	require.Equal(t, 0, code)
	var p map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &p))
	assert.Equal(t, "metallb", p["lab"])
}

func TestValidateReportsAllErrorsAndExits2(t *testing.T) {
	bad := `apiVersion: v6lab.dev/v1alpha1
kind: Lab
metadata: {name: Bad_Name}
spec:
  addressing: {parent: 10.0.0.0/8}
  routers:
    - {name: r1, role: spine, asn: 65001, linkz: [r2]}
  nodes:
    - {name: n1, role: server, router: r9}
  hosts: []
  datapath: warp
`
	p := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(p, []byte(bad), 0o644))
	code, _, errOut := runCLI(t, "validate", "--spec", p)
	assert.Equal(t, 2, code)
	for _, want := range []string{
		"metadata.name", "spec.routers[0].linkz", `did you mean "links"`, "spec.nodes[0].router",
		"spec.hosts", "spec.datapath", "hint:",
	} {
		assert.Contains(t, errOut, want)
	}
	assert.GreaterOrEqual(t, strings.Count(errOut, "\n  - "), 6, errOut)
}

func TestValidatePlanErrorsAreReported(t *testing.T) {
	code, out, _ := runCLI(t, "validate", "--print", "--spec", "embedded:tunnel")
	require.Equal(t, 0, code)
	spec := strings.Replace(out, "parent: 2001:db8::/48", "parent: 192.0.2.0/24", 1)
	p := filepath.Join(t.TempDir(), "v4.yaml")
	require.NoError(t, os.WriteFile(p, []byte(spec), 0o644))
	code, _, errOut := runCLI(t, "validate", "--spec", p)
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "spec.addressing.parent: IPv4 prefix")
}

func TestRenderWritesFiles(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runCLI(t, "render", "-o", dir)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "rendered")
	for _, f := range []string{"default.clab.yml", "frr/leaf1/frr.conf", "cilium/values.yaml", "k3s/server1/config.yaml", "plan.json"} {
		assert.FileExists(t, filepath.Join(dir, f))
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	code, _, _ := runCLI(t, "render")
	assert.Equal(t, 2, code, "missing -o")
	code, _, _ = runCLI(t, "plan", "--nope")
	assert.Equal(t, 2, code)
	code, _, _ = runCLI(t, "plan", "--spec", "/does/not/exist.yaml")
	assert.Equal(t, 2, code)
}

func TestRenderImageSources(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := runCLI(t, "render", "--images", "online", "--router-image", "example/frr:1", "-o", dir)
	require.Equal(t, 0, code, errOut)
	topo, err := os.ReadFile(filepath.Join(dir, "default.clab.yml"))
	require.NoError(t, err)
	assert.Contains(t, string(topo), "image: example/frr:1")
	assert.Contains(t, string(topo), "image: nicolaka/netshoot")
	assert.NotContains(t, string(topo), "image: v6lab/frr")

	code, _, _ = runCLI(t, "render", "--images", "bogus", "-o", dir)
	assert.Equal(t, 2, code)
}
