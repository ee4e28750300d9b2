// Package reports is the report model of a conformance run and its writers: junit.xml for
// CI, report.json (verdicts and every measured figure; a stable, versioned schema),
// report.html for people, and Compare, the pre-upgrade check between two runs.
package reports

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"v6lab.dev/v6lab/labs/atomicfile"
)

// SchemaVersion is the version of report.json. Readers refuse other major versions.
const SchemaVersion = "v6lab.dev/report/v1"

// Status is a check's outcome.
type Status string

const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
	// Inconclusive is a negative control that failed for a reason other than the one
	// it declares (a timeout, an exec error, a lab not settled) or could not run: it
	// proves nothing, and fails the run as a passing control does.
	Inconclusive Status = "inconclusive"
)

// Report is one conformance run on one lab configuration.
type Report struct {
	Schema     string            `json:"schema"`
	Lab        string            `json:"lab"`
	Labels     map[string]string `json:"labels"` // datapath, lb, cilium, kubernetes
	StartedAt  time.Time         `json:"startedAt"`
	FinishedAt time.Time         `json:"finishedAt"`
	Plan       string            `json:"plan,omitempty"` // the address plan tree
	Topology   *Topology         `json:"topology,omitempty"`
	Checks     []Check           `json:"checks"`
	// Compared is what changed since the run before this one, where the run is a stage
	// of an upgrade chain (the same lab at the release before).
	Compared *Comparison `json:"compared,omitempty"`
}

// Comparison is Compare's result against an earlier run, kept in the later run's report.
type Comparison struct {
	Against string   `json:"against"` // the earlier run, for people ("default at Cilium 1.19.3")
	Changes []Change `json:"changes"`
}

// Topology is what the HTML draws: the lab's members and links.
type Topology struct {
	Members []Member    `json:"members"`
	Links   [][2]string `json:"links"`
}

// Member is one box of the picture.
type Member struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // router, node, host
	Addr string `json:"addr,omitempty"`
}

// Check is one conformance check's verdict, with its evidence and figures.
type Check struct {
	Name   string            `json:"name"`
	Status Status            `json:"status"`
	Reason string            `json:"reason"`
	Labels map[string]string `json:"labels,omitempty"`
	// Seconds is how long the check took (its control apart, in Control.Seconds).
	Seconds  float64            `json:"seconds,omitempty"`
	Figures  map[string]float64 `json:"figures,omitempty"` // e.g. outage_ms, reroute_ms
	Evidence []Evidence         `json:"evidence,omitempty"`
	Pcaps    []string           `json:"pcaps,omitempty"` // relative to the run directory
	Timeline []Event            `json:"timeline,omitempty"`
	// Config holds values taken from the spec (budgets, thresholds, a timer's spread):
	// configuration, never measured, and never compared as measurements.
	Config map[string]float64 `json:"configuration,omitempty"`
	// Captures is every capture the check (and its control) took, with its sanity
	// figures: packets seen and frames the kernel dropped.
	Captures []Capture `json:"captures,omitempty"`
	// Control is the same check run on a lab broken on purpose; it must fail.
	Control *Control `json:"negativeControl,omitempty"`
	// Disagreements are the probes of which Hubble's flows and the capture tell
	// different stories, in the check's run and (Control) its negative control's.
	Disagreements []Disagreement `json:"hubbleDisagreements,omitempty"`
}

// Disagreement is one probe of which Hubble and the wire tell different stories.
type Disagreement struct {
	What    string `json:"what"`
	Wire    string `json:"wire"`   // what the capture showed
	Hubble  string `json:"hubble"` // what Hubble said
	Control bool   `json:"control,omitempty"`
}

// Capture is one capture point of a check, with its sanity figures.
type Capture struct {
	Name    string `json:"name"`  // the capture's name (pcap/<name>/)
	Point   string `json:"point"` // member:iface
	File    string `json:"file"`
	Packets int    `json:"packets"`
	Drops   int    `json:"drops"`
}

// Evidence points at a packet (or another fact) that supports the verdict.
type Evidence struct {
	File  string    `json:"file,omitempty"`
	Frame int       `json:"frame,omitempty"`
	Time  time.Time `json:"time,omitempty"`
	Src   string    `json:"src,omitempty"`
	Dst   string    `json:"dst,omitempty"`
	Note  string    `json:"note"`
}

// Event is a point of a failover timeline.
type Event struct {
	At    time.Time `json:"at"`
	Label string    `json:"label"`
	// Until makes the event a span (e.g. a loss window).
	Until time.Time `json:"until,omitempty"`
	// Lane groups events on one row of the drawing (e.g. "agent k8s-1", a flow's
	// name); an event without one marks a moment across every row.
	Lane string `json:"lane,omitempty"`
	// Kind says what the event is, for drawing it: "restart" (a component replaced),
	// "outage" (no reply), "stall" (a TCP connection without progress), "reset"; empty
	// for anything else.
	Kind string `json:"kind,omitempty"`
}

// Control is a negative control's outcome: Status must be Fail — the check failed on
// the broken lab, and for the reason the control declares (Expected among Observed) —
// and the lab must have been restored, for the check to count.
type Control struct {
	Breakage string `json:"breakage"` // what was broken on purpose
	Status   Status `json:"status"`
	Reason   string `json:"reason"`
	// Expected is the failure the control must produce (a reason kind, e.g.
	// source-outside-pool); Observed the kinds the check's run on the broken lab gave.
	Expected string   `json:"expectedFailure,omitempty"`
	Observed []string `json:"observedFailures,omitempty"`
	// Restore says how undoing the break went: "" when it was undone and the lab shown
	// to be back, else why not (which fails the check).
	RestoreError string `json:"restoreError,omitempty"`
	// Seconds is how long the control took, its restore included.
	Seconds float64 `json:"seconds,omitempty"`
}

// Effective is a check's status counting its negative control: a check whose control
// did not fail for its declared reason proves nothing, and fails; so does one whose
// lab was not restored after its control.
func (c Check) Effective() Status {
	if c.Control != nil && c.Control.RestoreError != "" && c.Status != Skip {
		return Fail
	}
	if c.Status == Pass && c.Control != nil && c.Control.Status != Fail {
		return Fail
	}
	return c.Status
}

// Counts sums the effective statuses.
func (r *Report) Counts() (pass, fail, skip int) {
	for _, c := range r.Checks {
		switch c.Effective() {
		case Pass:
			pass++
		case Fail:
			fail++
		default:
			skip++
		}
	}
	return
}

// Passed reports whether the run passed: no check (or control) failed.
func (r *Report) Passed() bool {
	_, fail, _ := r.Counts()
	return fail == 0
}

// Write writes report.json, junit.xml and report.html into dir, each atomically (a
// temporary file renamed over the old one): a reader, or a run interrupted while
// writing, never sees half a report.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	r.Schema = SchemaVersion
	sort.SliceStable(r.Checks, func(i, j int) bool { return r.Checks[i].Name < r.Checks[j].Name })
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(filepath.Join(dir, "report.json"), append(data, '\n')); err != nil {
		return err
	}
	junit, err := r.JUnit()
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(filepath.Join(dir, "junit.xml"), junit); err != nil {
		return err
	}
	html, err := r.HTML()
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, "report.html"), html)
}

// WriteFileAtomic writes data to path whole or not at all (labs/atomicfile).
func WriteFileAtomic(path string, data []byte) error { return atomicfile.Write(path, data, 0o644) }

// NewRunDir creates a new run directory under parent, named by the time (UTC,
// 20060102T150405Z); a second run in the same second gets -2, -3, ...: os.Mkdir
// either creates the directory or fails, so two runs never share one.
func NewRunDir(parent string, now time.Time) (string, error) {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	base := filepath.Join(parent, now.UTC().Format("20060102T150405Z"))
	for i := 1; i < 1000; i++ {
		dir := base
		if i > 1 {
			dir = fmt.Sprintf("%s-%d", base, i)
		}
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			return dir, nil
		}
		if !os.IsExist(err) {
			return "", err
		}
	}
	return "", fmt.Errorf("no free run directory under %s", parent)
}

// Read reads a run directory's report.json.
func Read(dir string) (*Report, error) {
	data, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if r.Schema != SchemaVersion {
		return nil, fmt.Errorf("%s: report schema %q, this v6lab reads %q", dir, r.Schema, SchemaVersion)
	}
	return &r, nil
}
