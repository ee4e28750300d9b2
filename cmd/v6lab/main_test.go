package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/labs/verdict"
	"v6lab.dev/v6lab/labs/xexec"
	"v6lab.dev/v6lab/reports"
	"v6lab.dev/v6lab/suites/conformance"
	"v6lab.dev/v6lab/topologies"
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
	assert.Contains(t, out, "Worker nodes: agent1 2001:db8:0:1::12")
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

func TestAnalyzeContract(t *testing.T) {
	dir := t.TempDir()
	client := netip.MustParseAddr("2001:db8:0:e01::2")
	world := netip.MustParseAddr("2001:db8:0:e02::2")
	t0 := time.Now()
	var frames []verdict.Frame
	for i := 0; i < 100; i++ {
		if i >= 40 && i < 60 {
			continue // a 210 ms hole
		}
		at := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		frames = append(frames, verdict.Frame{Time: at, Data: verdict.UDPFrame(client, world, 40000, 9000, nil)})
	}
	good := filepath.Join(dir, "good.pcapng")
	f, err := os.Create(good)
	require.NoError(t, err)
	require.NoError(t, verdict.WritePcapng(f, "eth1", frames))
	require.NoError(t, f.Close())

	code, out, _ := runCLI(t, "analyze", "source", "--expect", "2001:db8:0:e01::/64", "--proto", "udp", good)
	assert.Equal(t, 0, code, out)
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &v))
	assert.Equal(t, "source", v["check"])
	assert.Equal(t, true, v["pass"])

	code, out, _ = runCLI(t, "analyze", "source", "--expect", "2001:db8:0:a01::/64", good)
	assert.Equal(t, 1, code, "a failed check exits 1")
	assert.Contains(t, out, `"offenders": 80`)

	code, out, _ = runCLI(t, "analyze", "outage", "--proto", "udp", "--max-outage", "100ms", good)
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, `"duration_ms": 210`)
	code, _, _ = runCLI(t, "analyze", "outage", "--max-outage", "1s", good)
	assert.Equal(t, 0, code)

	code, _, _ = runCLI(t, "analyze", "ipv4", good)
	assert.Equal(t, 0, code)
	code, out, _ = runCLI(t, "analyze", "return-path", "--vip", world.String(), "--client", client.String(), good)
	assert.Equal(t, 1, code, "no reply from the VIP at all: never a pass\n%s", out)

	code, _, _ = runCLI(t, "analyze", "ipv4", filepath.Join(dir, "missing.pcap"))
	assert.Equal(t, 2, code, "unreadable file: bad input")
	code, _, _ = runCLI(t, "analyze", "source", "--expect", "nonsense", good)
	assert.Equal(t, 2, code, "bad flag value: bad input")
	code, _, _ = runCLI(t, "analyze", "outage", "--proto", "sctp", good)
	assert.Equal(t, 2, code)
}

func TestReportAndCompare(t *testing.T) {
	mk := func(outage float64) string {
		dir := t.TempDir()
		r := &reports.Report{Lab: "default", Labels: map[string]string{"cilium": "x"}, StartedAt: time.Now(), FinishedAt: time.Now(),
			Checks: []reports.Check{{Name: "failover", Status: reports.Pass, Figures: map[string]float64{"outage_ms": outage}}}}
		require.NoError(t, r.Write(dir))
		return dir
	}
	a, same, worse := mk(800), mk(810), mk(3000)
	code, out, _ := runCLI(t, "compare", a, same)
	assert.Equal(t, 0, code, out)
	assert.NotContains(t, out, "810", "a figure within the tolerance is not a change")
	code, out, _ = runCLI(t, "compare", "--figures", a, same)
	assert.Equal(t, 0, code, out)
	assert.Regexp(t, `failover\s+outage_ms\s+800\s+810`, out, "--figures prints every figure of both runs")
	code, out, _ = runCLI(t, "compare", a, worse)
	assert.Equal(t, 1, code, "a regression exits 1")
	assert.Contains(t, out, "REGRESSION")
	code, _, _ = runCLI(t, "compare", a, t.TempDir())
	assert.Equal(t, 2, code, "a directory without report.json is bad input")
	code, out, _ = runCLI(t, "report", a)
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "1 passed, 0 failed, 0 skipped")
}

// test and conformance refuse what they cannot run with status 2, before touching a lab.
func TestSuiteCommandsBadInput(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := runCLI(t, "test", "--suite", filepath.Join(dir, "missing.test"), "--state-dir", dir)
	assert.Equal(t, 2, code, errOut)
	assert.Contains(t, errOut, "missing.test")

	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("apiVersion: v6lab.dev/v1alpha1\nkind: Lab\nmetadata: {name: x}\nspec: {routerz: []}\n"), 0o644))
	code, _, errOut = runCLI(t, "conformance", "--matrix", bad, "--runs", dir)
	assert.Equal(t, 2, code, errOut)
	assert.Contains(t, errOut, "routerz")

	// The version axis names releases the spec accepts, all errors at once.
	code, _, errOut = runCLI(t, "conformance", "--cilium", "1.18.4", "--cilium", "1.7.0", "--cilium", "2.0", "--runs", dir)
	assert.Equal(t, 2, code, errOut)
	assert.Contains(t, errOut, `"1.7.0"`)
	assert.Contains(t, errOut, `"2.0"`)
	assert.Contains(t, errOut, "spec.versions.cilium")
}

// Offline, any release of a supported minor renders with the images v6lab builds for
// that release (from its Go module, named by the release); a minor without values is
// refused; online, the public images.
func TestRenderCiliumRelease(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "lab.yaml")
	def, err := topologies.Get(topologies.DefaultName)
	require.NoError(t, err)
	withCilium := func(v string) []byte { return []byte(strings.Replace(string(def), "cilium: 1.20.2", "cilium: "+v, 1)) }
	require.NoError(t, os.WriteFile(spec, withCilium("1.18.4"), 0o644))
	code, _, errOut := runCLI(t, "render", "--spec", spec, "-o", filepath.Join(dir, "out"))
	require.Equal(t, 0, code, errOut)
	values, err := os.ReadFile(filepath.Join(dir, "out", "cilium", "values.yaml"))
	require.NoError(t, err)
	assert.Contains(t, string(values), "v6lab/cilium-1.18.4:")
	assert.Contains(t, string(values), "v6lab/cilium-operator-1.18.4:")
	assert.NotContains(t, string(values), "preferIpv6", "1.18 has no top-level preferIpv6")

	require.NoError(t, os.WriteFile(spec, withCilium("1.19.3"), 0o644))
	code, _, errOut = runCLI(t, "render", "--spec", spec, "-o", filepath.Join(dir, "out19"))
	require.Equal(t, 0, code, errOut)
	values, err = os.ReadFile(filepath.Join(dir, "out19", "cilium", "values.yaml"))
	require.NoError(t, err)
	assert.Contains(t, string(values), "v6lab/cilium-1.19.3:")

	// A release no file of the repository names: the same way.
	require.NoError(t, os.WriteFile(spec, withCilium("1.19.5"), 0o644))
	code, _, errOut = runCLI(t, "render", "--spec", spec, "-o", filepath.Join(dir, "out2"))
	require.Equal(t, 0, code, errOut)
	values, err = os.ReadFile(filepath.Join(dir, "out2", "cilium", "values.yaml"))
	require.NoError(t, err)
	assert.Contains(t, string(values), "v6lab/cilium-1.19.5:")
	code, _, errOut = runCLI(t, "render", "--spec", spec, "--images", "online", "-o", filepath.Join(dir, "out3"))
	assert.Equal(t, 0, code, errOut)

	require.NoError(t, os.WriteFile(spec, withCilium("1.17.3"), 0o644))
	code, _, errOut = runCLI(t, "render", "--spec", spec, "-o", filepath.Join(dir, "out4"))
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "spec.versions.cilium")
}

// The progress view keeps the suite's progress lines, as they come, and drops the rest
// of the test log; without a terminal each line has the time of day.
func TestProgressWriter(t *testing.T) {
	var b bytes.Buffer
	at := time.Date(2026, 12, 2, 1, 2, 3, 0, time.UTC)
	w := &xexec.Lines{Line: (&progressWriter{w: &b, now: func() time.Time { return at }}).line}
	_, _ = w.Write([]byte("=== RUN   TestConformance/failover\nv6lab: failover           pass  2m01s  link-down 0ms (budget 1.0s)\n    --- PASS: TestConformance/failover (3.1s)\n"))
	assert.Equal(t, "01:02:03  failover           pass  2m01s  link-down 0ms (budget 1.0s)\n", b.String(), "a line is shown as soon as it is written")
	_, _ = w.Write([]byte("    conformance_test.go:195: failover failed: outage 12000 ms\nv6lab: failover           cont"))
	_, _ = w.Write([]byte("rol 25s failed as it must (outage-over-budget)\nconformance: 1 passed, 0 failed, 0 skipped\n"))
	assert.Equal(t, "01:02:03  failover           pass  2m01s  link-down 0ms (budget 1.0s)\n"+
		"01:02:03  failover           control 25s failed as it must (outage-over-budget)\n"+
		"01:02:03  conformance: 1 passed, 0 failed, 0 skipped\n", b.String())
	b.Reset()
	w = &xexec.Lines{Line: (&progressWriter{w: &b, tty: true}).line}
	_, _ = w.Write([]byte("v6lab: workload           ready 9.1s\n"))
	assert.Equal(t, "  workload           ready 9.1s\n", b.String())
}

// `v6lab test --help` names every check the suite has.
func TestTestHelpNamesEveryCheck(t *testing.T) {
	code, out, _ := runCLI(t, "test", "--help")
	require.Equal(t, 0, code)
	text := strings.Join(strings.Fields(out), " ")
	for _, c := range conformance.Checks() {
		assert.Contains(t, text, c.Name)
	}
}

// make conformance and make lab-up build only the Cilium release the embedded labs
// run: the Makefile's DEFAULT_CILIUM is the spec's default.
func TestMakefileDefaultCiliumIsTheSpecs(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	require.NoError(t, err)
	var got string
	for _, l := range strings.Split(string(mk), "\n") {
		if v, ok := strings.CutPrefix(l, "DEFAULT_CILIUM := "); ok {
			got = strings.TrimSpace(v)
		}
	}
	assert.Equal(t, spec.DefaultCiliumVersion, got)
}

func TestUpgradeChain(t *testing.T) {
	c, err := upgradeChain("1.18.4, v1.19.3,1.20.2", true)
	require.NoError(t, err)
	assert.Equal(t, []string{"1.18.4", "1.19.3", "1.20.2", "1.19.3"}, c, "up the chain, then back one step")
	c, err = upgradeChain("1.19.3,1.20.2", false)
	require.NoError(t, err)
	assert.Equal(t, []string{"1.19.3", "1.20.2"}, c)
	_, err = upgradeChain("1.18.4,1.20.2", true)
	assert.ErrorContains(t, err, "more than one minor")
	_, err = upgradeChain("1.20.2", true)
	assert.ErrorContains(t, err, "at least one to upgrade to")
}

// A release the Go module proxy does not serve says so, and what the user can do,
// before anything is built (it asks the proxy: not in -short).
func TestImagesBuildCiliumNotServed(t *testing.T) {
	if testing.Short() {
		t.Skip("asks the Go module proxy")
	}
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	code, _, errOut := runCLI(t, "images", "build", "--programs-only", "--cilium", "1.18.99")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, errOut, "Cilium 1.18.99 cannot be built offline: the Go module proxy does not serve github.com/cilium/cilium@v1.18.99")
	assert.Contains(t, errOut, "--images online")
	code, _, errOut = runCLI(t, "images", "build", "--programs-only", "--cilium", "1.18")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "--cilium")
}

// observe takes one lab at most (hubble's own flags go after --) and says when the lab
// is not up, before running anything.
func TestObserveBadInput(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := runCLI(t, "observe", "a", "b", "--state-dir", dir)
	assert.Equal(t, 2, code, errOut)
	assert.Contains(t, errOut, "hubble's flags go after --")
	code, _, errOut = runCLI(t, "observe", "--state-dir", dir, "--", "--last", "1")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, errOut, "is not up")
}
