package main

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"v6lab.dev/v6lab/reports"
)

// streamMatrixEnv names the matrix TestConformanceStreams runs (make test sets it).
const streamMatrixEnv = "V6LAB_STREAM_MATRIX"

// arrived is one line of v6lab's standard output and when the test read it.
type arrived struct {
	text string
	at   time.Time
}

var stamped = regexp.MustCompile(`^(\d\d:\d\d:\d\d)  (.*)$`)

// TestConformanceStreams drives `v6lab conformance` the way CI does, without a
// terminal, on a real lab, and judges what a person reading the log sees while it runs:
// every step of up as it starts and ends, then each check's verdict and its control's,
// each line as it happens (time-stamped with the time it was read, the verdicts spread
// over the run, not one block at the end), each verdict with the figure that matters
// (the check's headline in report.json), and the summary last.
func TestConformanceStreams(t *testing.T) {
	matrix := os.Getenv(streamMatrixEnv)
	if matrix == "" {
		t.Skipf("brings up a real lab; make test runs it (%s=embedded:metallb)", streamMatrixEnv)
	}
	bin, err := filepath.Abs("../../bin/v6lab")
	require.NoError(t, err)
	// The run directory is kept under V6LAB_STREAM_RUNS (make test's runs), else removed.
	runs := t.TempDir()
	if d := os.Getenv("V6LAB_STREAM_RUNS"); d != "" {
		require.NoError(t, os.MkdirAll(d, 0o755))
		runs, err = os.MkdirTemp(d, "stream-")
		require.NoError(t, err)
	}
	ctx := context.Background()
	if dl, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-6*time.Minute))
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, bin, "conformance", "--matrix", matrix, "--runs", runs)
	// Out of time: v6lab is interrupted, undoes its faults and removes its lab.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Minute
	cmd.Env = append(os.Environ(), "CLAB_VERSION_CHECK=disable")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var lines []arrived
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		fmt.Println(sc.Text()) // the CI log shows the run as it goes
		lines = append(lines, arrived{sc.Text(), time.Now()})
	}
	require.NoError(t, cmd.Wait(), "v6lab conformance --matrix %s", matrix)

	// Progress lines: stamped with the time they were written, which is when they
	// arrived (a block printed at the end would carry the end's time everywhere).
	var progress []arrived
	for _, l := range lines {
		m := stamped.FindStringSubmatch(l.text)
		if m == nil {
			continue
		}
		stamp, err := time.ParseInLocation("15:04:05", m[1], time.Local)
		require.NoError(t, err)
		wall := time.Date(l.at.Year(), l.at.Month(), l.at.Day(), stamp.Hour(), stamp.Minute(), stamp.Second(), 0, time.Local)
		if wall.Sub(l.at) > 12*time.Hour { // written just before midnight, read after
			wall = wall.AddDate(0, 0, -1)
		}
		assert.WithinDuration(t, l.at, wall, 3*time.Second, "%q arrived at %s", l.text, l.at.Format("15:04:05"))
		progress = append(progress, arrived{m[2], l.at})
	}
	require.NotEmpty(t, progress, "no time-stamped progress line")

	// up's steps, in order, each started and ended, before the workload and the checks.
	steps := []string{"host setup", "images", "render", "node files", "deploy", "bgp", "kubernetes", "cilium", "dns"}
	if strings.Contains(matrix, "metallb") {
		steps = []string{"host setup", "images", "render", "node files", "deploy", "bgp", "kubernetes", "cilium", "metallb", "dns"}
	}
	next := 0
	workload := -1
	for i, p := range progress {
		if strings.HasPrefix(p.text, "workload ") {
			workload = i
			break
		}
		if next < len(steps) && strings.HasPrefix(p.text, fmt.Sprintf("%-18s ✓ %s (", "up", steps[next])) {
			next++
		}
	}
	assert.Equal(t, len(steps), next, "up's steps streamed in order (got through %v)", steps[:next])
	require.GreaterOrEqual(t, workload, 0, "the workload's line")

	// Each check of the report: its verdict and its control's, as lines of their own,
	// the verdict with its headline figure.
	var reportDirs []string
	require.NoError(t, filepath.WalkDir(runs, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "report.json" {
			reportDirs = append(reportDirs, filepath.Dir(p))
		}
		return err
	}))
	require.Len(t, reportDirs, 1, "one lab, one report")
	r, err := reports.Read(reportDirs[0])
	require.NoError(t, err)
	var verdictTimes []time.Time
	for _, c := range r.Checks {
		verdict, control := -1, -1
		for i, p := range progress[workload:] {
			if strings.HasPrefix(p.text, fmt.Sprintf("%-18s %-5s ", c.Name, c.Status)) {
				verdict = workload + i
			}
			if strings.HasPrefix(p.text, fmt.Sprintf("%-18s control ", c.Name)) {
				control = workload + i
			}
		}
		if !assert.GreaterOrEqual(t, verdict, 0, "%s: no %s line", c.Name, c.Status) {
			continue
		}
		verdictTimes = append(verdictTimes, progress[verdict].at)
		if h := c.Headline(); h != "" && c.Status != reports.Skip {
			assert.Contains(t, progress[verdict].text, h, "%s: the verdict line has the figure", c.Name)
		}
		if c.Control != nil {
			assert.Greater(t, control, verdict, "%s: its control's line, after its verdict", c.Name)
		}
	}
	require.GreaterOrEqual(t, len(verdictTimes), 2)
	first, last := verdictTimes[0], verdictTimes[0]
	for _, at := range verdictTimes {
		if at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	assert.Greater(t, last.Sub(first), time.Minute, "the verdicts arrive as the checks finish, not at once")
	// The suite's summary after every verdict; then only the lab's removal.
	summary := -1
	for i, p := range progress {
		if strings.HasPrefix(p.text, "conformance: ") {
			summary = i
		}
	}
	require.GreaterOrEqual(t, summary, 0, "the suite's summary line")
	assert.False(t, progress[summary].at.Before(last), "the summary after every verdict")
	for _, p := range progress[summary+1:] {
		assert.True(t, strings.HasPrefix(p.text, fmt.Sprintf("%-18s ", "down")), "after the summary only the lab's removal, got %q", p.text)
	}
}
