package reports

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func sample(version string, outage float64, dsr Status, control Status) *Report {
	return &Report{
		Lab: "default", Labels: map[string]string{"datapath": "native", "lb": "cilium-bgp", "cilium": version},
		StartedAt: t0, FinishedAt: t0.Add(90 * time.Second), Plan: "2001:db8::/48  # Parent",
		Topology: &Topology{Members: []Member{{Name: "edge1", Kind: "router"}, {Name: "server1", Kind: "node", Addr: "2001:db8::11"},
			{Name: "client", Kind: "host"}}, Links: [][2]string{{"edge1", "server1"}, {"edge1", "client"}}},
		Checks: []Check{
			{Name: "no-masquerade", Status: Pass, Reason: "every source is the pod's own",
				Control:  &Control{Breakage: "masquerade rule on edge1", Status: control, Reason: "translated source 2001:db8:0:f00::1"},
				Evidence: []Evidence{{File: "pcap/world-eth1.pcapng", Frame: 3, Src: "2001:db8:0:a01::5", Dst: "2001:db8:0:e02::2", Note: "first match"}}},
			{Name: "failover-link", Status: Pass, Reason: "converged", Figures: map[string]float64{"outage_ms": outage, "packets": 1000},
				Timeline: []Event{{At: t0, Label: "link down"}, {At: t0.Add(10 * time.Millisecond), Until: t0.Add(time.Duration(outage) * time.Millisecond), Label: "loss window"}}},
			{Name: "dsr-return-path", Status: dsr, Reason: "replies left node B"},
			{Name: "tunnel-only", Status: Skip, Reason: "does not apply to native routing"},
		},
	}
}

func TestWriteAndRead(t *testing.T) {
	dir := t.TempDir()
	r := sample("1.20.2", 820, Pass, Fail)
	require.NoError(t, r.Write(dir))
	for _, f := range []string{"report.json", "junit.xml", "report.html"} {
		assert.FileExists(t, filepath.Join(dir, f))
	}
	back, err := Read(dir)
	require.NoError(t, err)
	assert.Equal(t, SchemaVersion, back.Schema)
	assert.Len(t, back.Checks, 4)
	assert.True(t, back.Passed())

	var suites junitSuites
	data, _ := os.ReadFile(filepath.Join(dir, "junit.xml"))
	require.NoError(t, xml.Unmarshal(data, &suites))
	require.Len(t, suites.Suites, 1)
	s := suites.Suites[0]
	assert.Equal(t, 5, s.Tests, "four checks and one negative control")
	assert.Equal(t, 0, s.Failures)
	assert.Equal(t, 1, s.Skipped)

	html, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	for _, want := range []string{"<svg", "loss window (810 ms)", "masquerade rule on edge1", "2001:db8::11", "does not apply to native routing"} {
		assert.Contains(t, string(html), want)
	}
}

// A check whose negative control did not fail is a failure: it cannot detect anything.
func TestControlThatDidNotFailFailsTheCheck(t *testing.T) {
	r := sample("1.20.2", 820, Pass, Pass)
	assert.False(t, r.Passed())
	j, err := r.JUnit()
	require.NoError(t, err)
	assert.Contains(t, string(j), "cannot detect what it claims to")
}

func TestCompareFindsRegressions(t *testing.T) {
	a := sample("1.18.4", 800, Pass, Fail)
	same := Compare(a, sample("1.20.2", 830, Pass, Fail), DefaultTolerance)
	assert.Empty(t, same, "30 ms is within the tolerance")
	assert.False(t, Regressed(same))

	worse := Compare(a, sample("1.20.2", 2400, Fail, Fail), DefaultTolerance)
	assert.True(t, Regressed(worse))
	var kinds []string
	for _, c := range worse {
		kinds = append(kinds, c.Check+"/"+c.Figure)
	}
	assert.ElementsMatch(t, []string{"failover-link/outage_ms", "dsr-return-path/"}, kinds)

	better := Compare(sample("1.18.4", 2400, Fail, Fail), a, DefaultTolerance)
	assert.False(t, Regressed(better), "faster and fixed is not a regression")
	assert.NotEmpty(t, better)

	var b strings.Builder
	require.NoError(t, WriteChanges(&b, a, sample("1.20.2", 2400, Fail, Fail), worse))
	assert.Contains(t, b.String(), "REGRESSION")
	assert.Contains(t, b.String(), "cilium=1.20.2")
}

// A timer-detected outage spreads by itself over the keepalive interval: two runs 1.8 s
// apart with a 3 s spread are the same; 4 s apart is a regression. Other faults keep
// the default tolerance.
func TestCompareAllowsAMeasurementsOwnSpread(t *testing.T) {
	run := func(stopped, link float64) *Report {
		return &Report{Lab: "tunnel", Checks: []Check{{Name: "failover", Status: Pass, Figures: map[string]float64{
			"outage_ms_node-stopped": stopped, "spread_ms_node-stopped": 3000, "lost_node-stopped": stopped / 10,
			"spread_lost_node-stopped": 300,
			"outage_ms_link-down":      link}}}}
	}
	a := run(7049, 0)
	assert.Empty(t, Compare(a, run(8870, 68), DefaultTolerance), "within the spread (time and lost probes), and 68 ms within 100 ms")
	b := run(7049, 0)
	b.Checks[0].Figures["control_outage_ms_silent-drop"] = 12000
	a.Checks[0].Figures["control_outage_ms_silent-drop"] = 3000
	assert.Empty(t, Compare(a, b, DefaultTolerance), "a negative control's figures are not the lab's")
	worse := Compare(a, run(11100, 0), DefaultTolerance)
	assert.True(t, Regressed(worse))
	var regressed []string
	for _, c := range worse {
		if c.Regression {
			regressed = append(regressed, c.Figure)
		}
	}
	assert.Equal(t, []string{"outage_ms_node-stopped"}, regressed, "the lost probes move too, but only the time is judged")
	assert.True(t, Regressed(Compare(a, run(7049, 400), DefaultTolerance)), "link down has no spread of its own")
}

// A failure the routers see at once: the outage lies between 0 and the withdrawal time
// of the same run, which widens the outage's tolerance alone (the figures of the CI run
// that flagged 0 -> 106.679 ms as a regression); the withdrawal keeps its own.
func TestCompareSpreadOfOneFigure(t *testing.T) {
	run := func(outage, withdraw float64) *Report {
		return &Report{Lab: "tunnel", Checks: []Check{{Name: "failover", Status: Pass, Figures: map[string]float64{
			"outage_ms_link-down": outage, "withdraw_ms_link-down": withdraw,
			SpreadOf("outage_ms_link-down"): withdraw}}}}
	}
	assert.Empty(t, Compare(run(0, 80), run(106.679, 85), DefaultTolerance))
	assert.True(t, Regressed(Compare(run(0, 80), run(400, 85), DefaultTolerance)), "beyond the withdrawal time")
	slower := Compare(run(0, 80), run(0, 500), DefaultTolerance)
	require.Len(t, slower, 2, "the withdrawal and its spread figure moved")
	assert.True(t, Regressed(slower), "the withdrawal time is not widened by itself")
}

func TestReadRefusesOtherSchemas(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "report.json"), []byte(`{"schema":"other/v9"}`), 0o644))
	_, err := Read(dir)
	assert.ErrorContains(t, err, "schema")
}

func TestWorseIfLarger(t *testing.T) {
	for fig, want := range map[string]bool{
		"outage_ms": true, "outage_ms_link-down": true, "withdraw_ms_node-stopped": true,
		"lost_session-down": false, "control_outage_ms_silent-drop": false, "threshold_ms": false,
		"spread_ms_node-stopped": false, "spread_outage_ms_link-down": false,
		"packets": false, "http_ok_app-a": false,
		"kept_stream_on_backend_ms_unready": false, "loss_ms_deleted": true,
	} {
		if got := worseIfLarger(fig); got != want {
			t.Errorf("worseIfLarger(%q) = %v, want %v", fig, got, want)
		}
	}
}

// Two runs started in the same second get distinct directories.
func TestNewRunDirIsDistinctWithinOneSecond(t *testing.T) {
	parent := t.TempDir()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	a, err := NewRunDir(parent, now)
	require.NoError(t, err)
	b, err := NewRunDir(parent, now)
	require.NoError(t, err)
	assert.NotEqual(t, a, b)
	assert.Equal(t, "20261201T100000Z", filepath.Base(a))
	assert.Equal(t, "20261201T100000Z-2", filepath.Base(b))
}

// A report is replaced whole: no temporary file is left, and the old content is
// never half overwritten.
func TestWriteFileAtomicLeavesNoTemporary(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "report.json")
	require.NoError(t, os.WriteFile(p, []byte("old"), 0o644))
	require.NoError(t, WriteFileAtomic(p, []byte("new")))
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "new", string(b))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1)
}

// A spread of one figure taken from configuration (the stall of a connection whose
// backend is on the failed node lasts from 0 to the whole stream) widens that figure.
func TestCompareSpreadOfOneFigureFromConfiguration(t *testing.T) {
	run := func(stall float64) *Report {
		return &Report{Lab: "default", Checks: []Check{{Name: "failover", Status: Pass,
			Figures: map[string]float64{"tcp_backend_on_node_stall_ms_link-down": stall},
			Config:  map[string]float64{SpreadOf("tcp_backend_on_node_stall_ms_link-down"): 22000}}}}
	}
	assert.Empty(t, Compare(run(0), run(15014), DefaultTolerance))
	assert.True(t, Regressed(Compare(run(0), run(30000), DefaultTolerance)))
}

// An upgrade's timeline is drawn one row per lane: the restarting agents first, then the
// flows; an event without a lane is a numbered mark listed under the drawing.
func TestTimelineLanes(t *testing.T) {
	ev := []Event{
		{At: t0.Add(2 * time.Second), Until: t0.Add(40 * time.Second), Lane: "client -> VIP (udp)", Kind: "flow", Label: "packets seen"},
		{At: t0.Add(10 * time.Second), Until: t0.Add(21 * time.Second), Lane: "client -> VIP (udp)", Kind: "outage", Label: "no reply"},
		{At: t0.Add(9 * time.Second), Until: t0.Add(24 * time.Second), Lane: "agent k8s-2", Kind: "restart", Label: "replaced (a -> b)"},
		{At: t0.Add(5 * time.Second), Until: t0.Add(20 * time.Second), Lane: "agent k8s-1", Kind: "restart", Label: "replaced (c -> d)"},
		{At: t0.Add(30 * time.Second), Label: "rollout done"},
	}
	svg := string(timelineSVG(ev))
	a1, a2, flow := strings.Index(svg, ">agent k8s-1<"), strings.Index(svg, ">agent k8s-2<"), strings.Index(svg, ">client -&gt; VIP (udp)<")
	require.True(t, a1 > 0 && a2 > 0 && flow > 0, svg)
	assert.Less(t, a1, a2, "restart lanes by name")
	assert.Less(t, a2, flow, "restart lanes above the flows")
	assert.Contains(t, svg, `class="bar outage"`)
	assert.Contains(t, svg, ">11s<", "an outage bar wide enough carries its duration")
	assert.Contains(t, svg, "<li>+28s rollout done</li>", "a lane-less event is listed with its time from the start")
	// Without lanes the single-axis drawing stays.
	assert.NotContains(t, string(timelineSVG([]Event{{At: t0, Label: "link down"}})), "by lane")
}

// An upgrade stage's report carries its comparison with the stage before, shown in the
// HTML with the regressions marked.
func TestComparedSection(t *testing.T) {
	dir := t.TempDir()
	a, b := sample("1.19.3", 800, Pass, Fail), sample("1.20.2", 2400, Fail, Fail)
	b.Compared = &Comparison{Against: "stage 0 (default at Cilium 1.19.3)", Changes: Compare(a, b, DefaultTolerance)}
	require.NoError(t, b.Write(dir))
	back, err := Read(dir)
	require.NoError(t, err)
	require.NotNil(t, back.Compared)
	assert.Equal(t, b.Compared.Changes, back.Compared.Changes)
	html, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	assert.Contains(t, string(html), "Compared with stage 0 (default at Cilium 1.19.3)")
	assert.Contains(t, string(html), `<tr class="fail"><td>dsr-return-path</td><td>verdict</td><td>pass</td><td>fail</td>`)

	b.Compared.Changes = nil
	require.NoError(t, b.Write(dir))
	html, _ = os.ReadFile(filepath.Join(dir, "report.html"))
	assert.Contains(t, string(html), "No verdict changed")
}

// The report's Hubble section: absent when no check compared, "no disagreement" on a
// good lab, and the control's disagreements shown as such.
func TestHTMLHubbleSection(t *testing.T) {
	render := func(checks ...Check) string {
		r := &Report{Schema: SchemaVersion, Lab: "default", Checks: checks}
		html, err := r.HTML()
		require.NoError(t, err)
		return string(html)
	}
	assert.NotContains(t, render(Check{Name: "dns", Status: Pass}), "Hubble and the wire")
	good := Check{Name: "hubble-flows", Status: Pass, Figures: map[string]float64{HubbleFlowsFigure: 12}}
	out := render(good)
	assert.Contains(t, out, "Hubble and the wire")
	assert.Contains(t, out, "No disagreement")
	good.Disagreements = []Disagreement{{What: "pod → world host, no policy", Wire: "5 sent, 0 delivered", Hubble: "FORWARDED ×1", Control: true}}
	out = render(good)
	assert.NotContains(t, out, "No disagreement")
	assert.Contains(t, out, "negative control</td><td>pod → world host, no policy</td><td>5 sent, 0 delivered</td><td>FORWARDED ×1")
}
