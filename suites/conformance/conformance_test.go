package conformance

import (
	"errors"
	"slices"

	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"sigs.k8s.io/e2e-framework/pkg/env"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"v6lab.dev/v6lab/fixtures"
	"v6lab.dev/v6lab/labs/images"
	"v6lab.dev/v6lab/labs/lab"
	"v6lab.dev/v6lab/labs/runtime"
	"v6lab.dev/v6lab/labs/xexec"
	"v6lab.dev/v6lab/reports"
)

// Flags (go test ... -args -v6lab.lab NAME, or through `v6lab test` / make conformance).
var (
	flagLab      = flag.String("v6lab.lab", "", "run on this running lab (default: bring up a lab of the suite's own from -v6lab.spec, and remove it afterwards)")
	flagSpec     = flag.String("v6lab.spec", "", "lab spec for a lab of the suite's own (default: the embedded default lab)")
	flagName     = flag.String("v6lab.name", "conformance", "name of the suite's own lab")
	flagRun      = flag.String("v6lab.run", "", "run directory for the report and the pcapng files (default: a new temporary directory)")
	flagStateDir = flag.String("v6lab.state-dir", "", "v6lab state directory (default: $V6LAB_STATE_DIR or ~/.local/state/v6lab)")
	flagBin      = flag.String("v6lab.bin", "", "directory with v6lab's tools (default: the repository's bin/)")
	flagCilium   = flag.String("v6lab.cilium", "", "Cilium release of the suite's own lab, instead of the spec's (e.g. 1.18.4)")
	flagUpgrade  = flag.String("v6lab.upgrade-to", "", "upgrade (or downgrade) the lab's Cilium in place to this release first, under traffic (the upgrade-disruption check); the rest of the suite judges the new release")
	flagKeep     = flag.Bool("v6lab.keep", false, "keep the lab as the suite leaves it: its own lab running, the workload deployed")
)

var (
	testenv env.Environment
	theLab  *Lab
	// skipAll is why the suite cannot run here (no Docker, tools not built).
	skipAll string
)

func TestMain(m *testing.M) {
	cfg, err := envconf.NewFromFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// The concurrent checks run as parallel features (testenv.TestInParallel); the
	// rest, one after another.
	cfg.WithParallelTestEnabled()
	if testing.Short() {
		skipAll = "integration suite (-short)"
		os.Exit(m.Run())
	}
	o, l, own, err := prepare()
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(2)
	}
	if skipAll != "" {
		os.Exit(m.Run())
	}
	// SIGINT/SIGTERM (Ctrl-C, or v6lab stopping the suite) cancel every check: a check
	// undoes the fault it injected, its control's restore runs on a context of its own,
	// and Finish still writes the report and removes the suite's own lab.
	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if testenv, err = env.NewWithContext(sigCtx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if !own {
		// A user's lab: no up or down of another v6lab while the suite runs on it.
		unlock, err := runtime.Lock(o, l.Plan.Lab, "test")
		if err != nil {
			fmt.Fprintln(os.Stderr, "conformance:", err)
			os.Exit(2)
		}
		defer unlock()
	}
	testenv.Setup(func(ctx context.Context, cfg *envconf.Config) (ctx2 context.Context, err error) {
		// A failed setup skips Finish: remove the suite's own lab here.
		defer func() {
			if err != nil && own && !*flagKeep {
				o.Out = stepLines("down")
				_ = runtime.Down(context.WithoutCancel(ctx), l.Plan.Lab, o)
			}
		}()
		if own {
			var out bytes.Buffer
			// Each step of down and up is shown as it starts and ends (v6lab
			// conformance streams these lines); up's output is kept for the error.
			// A leftover of an interrupted run goes first.
			o.Out = stepLines("down")
			_ = runtime.Down(ctx, l.Plan.Lab, o)
			o.Out = io.MultiWriter(&out, stepLines("up"))
			if err := runtime.Up(ctx, l, o); err != nil {
				return ctx, fmt.Errorf("up: %w\n%s", err, out.String())
			}
		}
		x, err := Open(l, o, runDir(), kubectl(o.BinDir), hostImage())
		if err != nil {
			return ctx, err
		}
		x.UpgradeTo = *flagUpgrade
		cfg.WithKubeconfigFile(x.Kubeconfig)
		start := time.Now()
		x.markDrops(ctx, "", nil)
		x.markMetalLB(ctx, "")
		if err := x.Deploy(ctx); err != nil {
			return ctx, err
		}
		x.markDrops(ctx, "workload", workloadDrops)
		x.markMetalLB(ctx, "workload")
		announce("%-18s ready %s  echo pods on every node, the DSR backend, their Services; every agent knows every pod", "workload", reports.Human(time.Since(start)))
		theLab = x
		return ctx, nil
	})
	testenv.Finish(func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
		// Interrupted or not, the report is written and the lab cleaned up.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		if theLab != nil {
			r, err := theLab.WriteReport()
			if err != nil {
				return ctx, err
			}
			pass, fail, skip := r.Counts()
			fmt.Printf("conformance: %d passed, %d failed, %d skipped\n%s\n", pass, fail, skip, theLab.RunDir)
			if !own && !*flagKeep {
				theLab.Cleanup(ctx) // a user's lab gets back what it had
			}
		}
		if own && !*flagKeep {
			o.Out = stepLines("down")
			return ctx, runtime.Down(ctx, l.Plan.Lab, o)
		}
		return ctx, nil
	})
	code := testenv.Run(m)
	stop()
	os.Exit(code)
}

// prepare finds the tools and the lab; own says the suite brings the lab up itself.
func prepare() (runtime.Options, *lab.Lab, bool, error) {
	bin := *flagBin
	if bin == "" {
		bin, _ = filepath.Abs("../../bin")
	}
	o := runtime.Options{StateDir: *flagStateDir, BinDir: bin}
	if o.StateDir == "" {
		o.StateDir = runtime.DefaultStateDir()
	}
	missing := ""
	if err := exec.Command("docker", "info").Run(); err != nil {
		missing = "no Docker engine (make host-setup)"
	}
	// Cilium's release is built on demand by up (labs/ciliumbuild), not required here.
	for _, p := range []string{"containerlab", "k8s/kubelet", "k8s/kubectl"} {
		if _, err := os.Stat(filepath.Join(bin, p)); err != nil && missing == "" {
			missing = "bin/" + p + " missing (make tools k8s cilium)"
		}
	}
	if missing != "" {
		if os.Getenv("CI") != "" {
			return o, nil, false, fmt.Errorf("%s: make test builds everything first", missing)
		}
		skipAll = missing
		return o, nil, false, nil
	}
	if *flagLab != "" {
		l, err := lab.Load(filepath.Join(o.LabDir(*flagLab), "spec.yaml"))
		return o, l, false, err
	}
	l, err := lab.Load(*flagSpec)
	if err != nil {
		return o, nil, false, err
	}
	if *flagCilium != "" {
		if l, err = l.WithCilium(*flagCilium); err != nil {
			return o, nil, false, err
		}
	}
	l, err = l.Renamed(*flagName)
	return o, l, true, err
}

func runDir() string {
	if *flagRun != "" {
		return *flagRun
	}
	d, err := os.MkdirTemp("", "v6lab-conformance-")
	if err != nil {
		panic(err)
	}
	return d
}

func kubectl(bin string) string { return filepath.Join(bin, "k8s", "kubectl") }

func hostImage() string {
	refs, err := images.Refs(fixtures.Images)
	if err != nil {
		panic(err)
	}
	return refs["host"]
}

// announce prints one line of the run's progress at once, on the suite's standard
// output: `v6lab test` and `v6lab conformance` show these lines as they come (the
// rest of the test log goes to suite.log).
func announce(format string, a ...any) {
	fmt.Fprintf(os.Stdout, "v6lab: "+format+"\n", a...)
}

// stepLines announces the step lines of up's or down's progress ("… name" as a step
// starts, "✓ name (elapsed): detail" or "✗ ..." as it ends) under label, without their
// time stamps.
func stepLines(label string) io.Writer {
	return &xexec.Lines{Line: func(s string) {
		for _, mark := range []string{"… ", "✓ ", "✗ "} {
			if i := strings.Index(s, mark); i >= 0 {
				announce("%-18s %s", label, strings.TrimSpace(s[i:]))
				return
			}
		}
	}}
}

func colonOr(s string) string {
	if s == "" {
		return ""
	}
	return "  " + s
}

// feature makes an e2e-framework feature of a check: an assessment on the lab as it
// is, then its negative control on the lab broken on purpose. The report gets the
// check's verdict with its control's (rec, which controlFeature completes when the
// control runs later); a check that does not apply is skipped, with the reason in the
// report. together: the check runs in its concurrent group (Check.Concurrent): its
// window of Cilium's drop counters and of MetalLB's metrics is the phase's
// (concurrentPhase), and a control that breaks the lab is left to controlFeature,
// which runs it alone, in the check's place in the suite's order. withControl: its
// control runs in this feature, after the run (not: it breaks the lab and runs
// later, alone or in its control group, Check.ControlGroup).
func feature(c Check, rec *reports.Check, together, withControl bool) features.Feature {
	b := features.New(c.Name).
		WithLabel("check", c.Name).
		Setup(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			x := theLab
			s := x.Lab.Spec.Spec
			*rec = reports.Check{Name: c.Name, Labels: map[string]string{
				"datapath": string(s.Datapath), "lb": string(s.LoadBalancer.Announcer), "cilium": s.Versions.Cilium}}
			return ctx
		}).
		Assess("passes on the lab", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			x := theLab
			if why := c.Applies(x); why != "" {
				rec.Status, rec.Reason = reports.Skip, why
				x.Record(*rec)
				announce("%-18s skip  %s", c.Name, why)
				t.Skip(why)
			}
			ctx = WithCaptureLog(ctx) // only this check's captures go into its record
			start := time.Now()
			res, err := c.Run(ctx, x, false)
			if !together {
				x.markDrops(ctx, c.Name, c.PassDrops)
			}
			fill(rec, res, err)
			if !together {
				rec.Evidence = append(rec.Evidence, x.markMetalLB(ctx, "the run")...)
			}
			rec.Seconds = time.Since(start).Seconds()
			rec.Captures = x.TakeCaptures(ctx)
			x.Record(*rec)
			announce("%-18s %-5s %s%s", c.Name, rec.Status, reports.Human(time.Since(start)), colonOr(rec.Headline()))
			if rec.Status != reports.Pass {
				t.Errorf("%s failed: %s", c.Name, rec.Reason)
			}
			t.Logf("%s: %s %v", c.Name, rec.Reason, rec.Figures)
			return ctx
		})
	if withControl {
		b = b.Assess("negative control fails", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			assessControl(ctx, t, c, rec, together)
			return ctx
		})
	}
	return b.Feature()
}

// controlFeature is the feature of a control that breaks the lab run apart from its
// check's run: alone, after the check's concurrent phase, or together with its control
// group (together: the phase keeps the drop and MetalLB windows); it completes the
// check's record.
func controlFeature(c Check, rec *reports.Check, together bool) features.Feature {
	return features.New(c.Name).
		WithLabel("check", c.Name).
		Assess("negative control fails", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			assessControl(ctx, t, c, rec, together)
			return ctx
		}).Feature()
}

// assessControl runs a check's negative control and records it with the check.
func assessControl(ctx context.Context, t *testing.T, c Check, rec *reports.Check, together bool) {
	x := theLab
	if rec.Status == reports.Skip || rec.Name == "" {
		t.Skip(rec.Reason)
	}
	ctx = WithCaptureLog(ctx)
	start := time.Now()
	ctrl, res := runControl(ctx, x, c)
	var metallb []reports.Evidence
	if !together {
		x.markDrops(ctx, c.Name+" control", c.ControlDrops)
		metallb = x.markMetalLB(ctx, "the control")
	}
	ctrl.Seconds = time.Since(start).Seconds()
	verdict := "failed as it must (" + c.Expect + ")"
	switch {
	case ctrl.RestoreError != "":
		verdict = "NOT RESTORED: " + ctrl.RestoreError
	case ctrl.Status != reports.Fail:
		verdict = fmt.Sprintf("%s: expected %s, observed %v: %s", strings.ToUpper(string(ctrl.Status)), c.Expect, ctrl.Observed, ctrl.Reason)
	}
	announce("%-18s control %s %s", c.Name, reports.Human(time.Since(start)), verdict)
	switch ctrl.Status {
	case reports.Fail:
		t.Logf("%s control failed as it must (%s): %s", c.Name, c.Expect, res.Reason)
	default:
		t.Errorf("%s: negative control %s: %s", c.Name, ctrl.Status, ctrl.Reason)
	}
	if ctrl.RestoreError != "" {
		t.Errorf("restoring the lab after %s's control: %s", c.Name, ctrl.RestoreError)
	}
	rec.Control = ctrl
	rec.Evidence = append(rec.Evidence, metallb...)
	rec.Pcaps = append(rec.Pcaps, res.Pcaps...)
	for _, d := range res.Disagreements {
		d.Control = true
		rec.Disagreements = append(rec.Disagreements, d)
	}
	rec.Captures = append(rec.Captures, x.TakeCaptures(ctx)...)
	for k, v := range res.Figures {
		if rec.Figures == nil {
			rec.Figures = map[string]float64{}
		}
		rec.Figures["control_"+k] = v
	}
	x.Record(*rec)
}

// runControl runs a check's negative control: it breaks the lab (or, for a variant,
// runs the variant), runs the check, and undoes the break on a context of its own (an
// interrupted run restores too), then waits until the lab is shown to be back. The
// control counts (Status Fail) only when the check failed with the failure kind the
// control declares; any other failure, or a control that could not run, is
// inconclusive.
func runControl(ctx context.Context, x *Lab, c Check) (*reports.Control, Result) {
	ctrl := &reports.Control{Breakage: c.Control(), Expected: c.Expect}
	var (
		res     Result
		err     error
		restore func(context.Context) error
	)
	if c.Break != nil {
		restore, err = c.Break(ctx, x)
	}
	if err == nil {
		res, err = c.Run(ctx, x, true)
	}
	if restore != nil || c.Break == nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		var rerr error
		if restore != nil {
			rerr = restore(rctx)
		}
		if rerr == nil { // the next check starts on a settled datapath
			rerr = x.WaitDatapath(rctx, 3*time.Minute)
		}
		if rerr != nil {
			ctrl.RestoreError = rerr.Error()
		}
		cancel()
	}
	ctrl.Observed = res.Failures
	switch {
	case err != nil:
		ctrl.Status, ctrl.Reason = reports.Inconclusive, "the control could not run: "+err.Error()
	case res.Pass:
		ctrl.Status, ctrl.Reason = reports.Pass, "the check passed on a broken lab: it cannot fail, so it proves nothing"
	case !slices.Contains(res.Failures, c.Expect):
		ctrl.Status, ctrl.Reason = reports.Inconclusive, "the check failed, but not with "+c.Expect+" (the failure this control must produce): "+res.Reason
	default:
		ctrl.Status, ctrl.Reason = reports.Fail, res.Reason
	}
	return ctrl, res
}

func fill(rec *reports.Check, res Result, err error) {
	if err != nil {
		rec.Status, rec.Reason = reports.Fail, "the check could not run: "+err.Error()
		return
	}
	rec.Status = reports.Fail
	if res.Pass {
		rec.Status = reports.Pass
	}
	rec.Reason, rec.Figures, rec.Config, rec.Evidence, rec.Pcaps, rec.Timeline = res.Reason, res.Figures, res.Config, res.Evidence, res.Pcaps, res.Timeline
	rec.Disagreements = res.Disagreements
}

func TestConformance(t *testing.T) {
	if skipAll != "" {
		if os.Getenv("CI") != "" && !testing.Short() {
			t.Fatal(skipAll)
		}
		t.Skip(skipAll)
	}
	checks := Checks()
	recs := make([]reports.Check, len(checks))
	for _, p := range planPhases(checks) {
		switch {
		case len(p.together) > 0:
			var together []features.Feature
			for _, i := range p.together {
				// A variant control runs with its check; one that breaks the lab, later.
				together = append(together, feature(checks[i], &recs[i], true, checks[i].Break == nil))
			}
			concurrentPhase(checks, recs, p.together, false, func() { testenv.TestInParallel(t, together...) })
		case len(p.controls) > 0:
			var controls []features.Feature
			for _, i := range p.controls {
				controls = append(controls, controlFeature(checks[i], &recs[i], true))
			}
			concurrentPhase(checks, recs, p.controls, true, func() { testenv.TestInParallel(t, controls...) })
		case p.step.controlOnly:
			testenv.Test(t, controlFeature(checks[p.step.check], &recs[p.step.check], false))
		default:
			testenv.Test(t, feature(checks[p.step.check], &recs[p.step.check], false, !p.step.runOnly))
		}
	}
}

// phase is one step of the suite's order: the checks of one concurrent group together,
// the controls of one control group together, or one check alone (or a concurrent
// check's control that breaks the lab).
type phase struct {
	together []int // indexes of the checks of the group
	controls []int // indexes of the checks whose controls run together
	step     phaseStep
}

type phaseStep struct {
	check       int  // index of the check
	controlOnly bool // its control alone (its run was concurrent)
	runOnly     bool // its run alone (its control runs in its control group)
}

// planPhases orders the suite: the checks in the suite's order, where a concurrent
// group runs where its first check stands (upgrade-disruption, first, judges the
// upgrade the rest then judge), a concurrent check's control that breaks the lab
// keeps the check's place, after its group, and a control group runs after its last
// member's run.
func planPhases(checks []Check) []phase {
	var out []phase
	group := map[int]int{}     // Check.Concurrent -> its phase
	members := map[int][]int{} // Check.ControlGroup -> its members, in the suite's order
	for i, c := range checks {
		if c.ControlGroup != 0 {
			members[c.ControlGroup] = append(members[c.ControlGroup], i)
		}
	}
	for i, c := range checks {
		grouped := c.ControlGroup != 0
		switch {
		case c.Concurrent == 0:
			out = append(out, phase{step: phaseStep{check: i, runOnly: grouped}})
		default:
			if k, ok := group[c.Concurrent]; ok {
				out[k].together = append(out[k].together, i)
			} else {
				group[c.Concurrent] = len(out)
				out = append(out, phase{together: []int{i}})
			}
			if c.Break != nil && !grouped {
				out = append(out, phase{step: phaseStep{check: i, controlOnly: true}})
			}
		}
		if m := members[c.ControlGroup]; grouped && m[len(m)-1] == i {
			out = append(out, phase{controls: m})
		}
	}
	return out
}

// concurrentPhase runs a concurrent group's checks and gives those that ran one window
// of Cilium's drop counters, labelled with their names and allowing what any of them
// allows, and one of MetalLB's metrics, whose evidence goes to each of them.
func concurrentPhase(checks []Check, recs []reports.Check, group []int, controls bool, run func()) {
	start := time.Now()
	run()
	x := theLab
	if x == nil {
		return
	}
	ctx := context.Background()
	var names, allowed []string
	var ran []int
	for _, i := range group {
		c := checks[i]
		if recs[i].Name == "" || recs[i].Status == reports.Skip {
			continue
		}
		ran = append(ran, i)
		names = append(names, c.Name)
		if !controls {
			allowed = append(allowed, c.PassDrops...)
		}
		if c.Break == nil || controls {
			allowed = append(allowed, c.ControlDrops...)
		}
	}
	if len(ran) == 0 {
		return
	}
	slices.Sort(allowed)
	label, what := "concurrent checks ("+strings.Join(names, ", ")+")", strings.Join(names, ", ")
	if controls {
		label, what = "concurrent controls ("+strings.Join(names, ", ")+")", "the controls of "+what
	}
	x.markDrops(ctx, label, slices.Compact(allowed))
	if ev := x.markMetalLB(ctx, label); len(ev) > 0 {
		for _, i := range ran {
			recs[i].Evidence = append(recs[i].Evidence, ev...)
			x.Record(recs[i])
		}
	}
	announce("%-18s %s ran together in %s", "concurrent", what, reports.Human(time.Since(start)))
}

// Every check is complete: a name, a control that either breaks the lab (with what
// restores it) or is a variant of the check's own run — never both, never neither —
// and the failure kind that control must produce.
func TestChecksAreComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Checks() {
		assert.NotEmpty(t, c.Name)
		assert.False(t, seen[c.Name], "%s repeated", c.Name)
		seen[c.Name] = true
		assert.NotNil(t, c.Run, c.Name)
		assert.NotNil(t, c.Applies, c.Name)
		assert.NotEmpty(t, c.Expect, "%s: its control declares no failure kind", c.Name)
		switch {
		case c.Break != nil && c.Variant != "":
			t.Errorf("%s: both a break and a variant", c.Name)
		case c.Break == nil && c.Variant == "":
			t.Errorf("%s: a control that breaks nothing and is no variant asserts nothing", c.Name)
		case c.Break != nil && strings.TrimSpace(c.Breakage) == "":
			t.Errorf("%s: a break that does not say what it breaks", c.Name)
		case c.ControlGroup != 0 && c.Break == nil:
			t.Errorf("%s: in a control group, but its control is a variant (it runs with its check)", c.Name)
		}
	}
}

// A control is judged by the failure it declares: the declared kind is a pass of the
// control (Fail), another kind or an error is inconclusive, a passing run proves
// nothing; a failed restore is recorded.
func TestControlVerdicts(t *testing.T) {
	x := &Lab{}
	mk := func(res Result, err error) Check {
		return Check{Name: "c", Expect: kindUnanswered, Variant: "v",
			Run: func(context.Context, *Lab, bool) (Result, error) { return res, err }}
	}
	failed := func(kinds ...string) Result {
		r := Result{Pass: true}
		for _, k := range kinds {
			r.fail(k, "x")
		}
		return r
	}
	// After a variant (or a restore) the suite waits for the datapath, which needs a
	// cluster: these controls break with no restore, or one that fails on purpose.
	withBreak := func(c Check, restoreErr error) Check {
		c.Variant = ""
		c.Breakage = "b"
		c.Break = func(context.Context, *Lab) (func(context.Context) error, error) {
			return nil, nil
		}
		if restoreErr != nil {
			c.Break = func(context.Context, *Lab) (func(context.Context) error, error) {
				return func(context.Context) error { return restoreErr }, nil
			}
		}
		return c
	}
	for _, tc := range []struct {
		name    string
		c       Check
		status  reports.Status
		restore bool
	}{
		{"declared kind", withBreak(mk(failed(kindUnanswered, kindNothingSeen), nil), nil), reports.Fail, false},
		{"another kind", withBreak(mk(failed(kindNothingSeen), nil), nil), reports.Inconclusive, false},
		{"could not run", withBreak(mk(Result{}, errors.New("exec: timed out")), nil), reports.Inconclusive, false},
		{"passed", withBreak(mk(Result{Pass: true}, nil), nil), reports.Pass, false},
		{"restore failed", withBreak(mk(failed(kindUnanswered), nil), errors.New("policy still there")), reports.Fail, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctrl, _ := runControl(context.Background(), x, tc.c)
			assert.Equal(t, tc.status, ctrl.Status, ctrl.Reason)
			assert.Equal(t, kindUnanswered, ctrl.Expected)
			if tc.restore {
				assert.Contains(t, ctrl.RestoreError, "policy still there")
				assert.Equal(t, reports.Fail, reports.Check{Status: reports.Pass, Control: ctrl}.Effective(), "a lab not restored fails the check")
			} else {
				assert.Empty(t, ctrl.RestoreError)
			}
		})
	}
}
