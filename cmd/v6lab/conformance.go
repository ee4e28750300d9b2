package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"v6lab.dev/v6lab/labs/lab"
	"v6lab.dev/v6lab/labs/runtime"
	"v6lab.dev/v6lab/labs/xexec"
	"v6lab.dev/v6lab/reports"
	"v6lab.dev/v6lab/suites/conformance"
)

// The conformance suite is a compiled test binary (make build: go test -c
// ./suites/conformance), run as Kubernetes runs e2e.test: v6lab test hands it a
// running lab, v6lab conformance a spec for each lab of the matrix.
const suiteBinary = "v6lab-conformance.test"

type suiteFlags struct {
	suite    string
	feature  string
	skip     string
	timeout  time.Duration
	keep     bool
	verbose  bool
	labelSel string
}

func (f *suiteFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.suite, "suite", "", "the conformance suite binary (default: "+suiteBinary+" next to v6lab)")
	c.Flags().StringVar(&f.feature, "check", "", "run only the checks whose name matches this regular expression")
	c.Flags().StringVar(&f.skip, "skip", "", "leave out the checks whose name matches this regular expression (after --check)")
	c.Flags().StringVar(&f.labelSel, "labels", "", "run only the checks with these labels (e2e-framework --labels, e.g. check=failover)")
	c.Flags().DurationVar(&f.timeout, "timeout", 2*time.Hour, "give up after this long")
	c.Flags().BoolVar(&f.keep, "keep", false, "leave the lab as the suite leaves it (workload deployed; conformance: labs kept running)")
	c.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "print the suite's full test output")
}

func (f *suiteFlags) binary() (string, error) {
	p := f.suite
	if p == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", err
		}
		p = filepath.Join(filepath.Dir(exe), suiteBinary)
	}
	if _, err := os.Stat(p); err != nil {
		return "", &exitCode{2, fmt.Errorf("conformance suite %s not found (make build builds it): %w", p, err)}
	}
	return p, nil
}

// suiteStopDelay bounds how long an interrupted suite may take to undo its faults,
// restore the lab and write its report.
const suiteStopDelay = 5 * time.Minute

// runSuite runs the suite binary with the v6lab flags; it returns the run's report.
func (g *globals) runSuite(cmd *cobra.Command, f *suiteFlags, runDir string, labArgs ...string) (*reports.Report, error) {
	bin, err := f.binary()
	if err != nil {
		return nil, err
	}
	exe, _ := os.Executable()
	state := g.runtimeOptions(cmd).StateDir
	args := []string{"-test.run", "^TestConformance$", "-test.v", "-test.timeout", f.timeout.String(),
		"-v6lab.run", runDir, "-v6lab.state-dir", state, "-v6lab.bin", filepath.Dir(exe)}
	args = append(args, labArgs...)
	if f.keep {
		args = append(args, "-v6lab.keep")
	}
	if f.feature != "" {
		args = append(args, "--feature", f.feature)
	}
	if f.skip != "" {
		args = append(args, "--skip-features", f.skip)
	}
	if f.labelSel != "" {
		args = append(args, "--labels", f.labelSel)
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(runDir, "suite.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	out := io.Writer(logFile)
	if f.verbose {
		out = io.MultiWriter(logFile, cmd.OutOrStdout())
	} else {
		out = io.MultiWriter(logFile, newProgressWriter(cmd.OutOrStdout()))
	}
	c := exec.CommandContext(cmd.Context(), bin, args...)
	// Interrupted: the suite is asked to stop (SIGINT), undoes the fault it has
	// injected, restores the lab and writes its report; only if it has not finished
	// within suiteStopDelay is it killed.
	c.Cancel = func() error { return c.Process.Signal(os.Interrupt) }
	c.WaitDelay = suiteStopDelay
	c.Stdout, c.Stderr = out, out
	c.Env = append(os.Environ(), "CLAB_VERSION_CHECK=disable")
	runErr := c.Run()
	r, err := reports.Read(runDir)
	if err != nil {
		if runErr != nil {
			return nil, fmt.Errorf("the suite failed before writing a report (%v); see %s", runErr, logFile.Name())
		}
		return nil, err
	}
	return r, nil
}

// progressWriter shows the suite's progress lines as they come (`v6lab: ...`: the
// workload, then each check's verdict and its control's, with the figure that
// matters), prefixed with the time of day where no terminal is attached (CI logs),
// and hides the rest of the test log, which stays in suite.log.
type progressWriter struct {
	w   io.Writer
	tty bool
	now func() time.Time
}

func newProgressWriter(w io.Writer) io.Writer {
	p := &progressWriter{w: w, tty: runtime.IsTerminal(w), now: time.Now}
	return &xexec.Lines{Line: p.line}
}

// line shows one line of the suite's output if it is a progress line.
func (p *progressWriter) line(s string) {
	s = strings.TrimSpace(s)
	msg, ok := strings.CutPrefix(s, "v6lab: ")
	if !ok {
		for _, prefix := range []string{"conformance:", "panic:", "FAIL\t", "--- FAIL: TestConformance "} {
			if strings.HasPrefix(s, prefix) {
				msg, ok = s, true
			}
		}
	}
	if !ok {
		return
	}
	if p.tty {
		fmt.Fprintln(p.w, "  "+msg)
	} else {
		fmt.Fprintln(p.w, p.now().Format("15:04:05")+"  "+msg)
	}
}

func summarize(w io.Writer, name string, r *reports.Report) bool {
	pass, fail, skip := r.Counts()
	fmt.Fprintf(w, "%s (%s): %d passed, %d failed, %d skipped\n", name, labelString(r.Labels), pass, fail, skip)
	for _, c := range r.Checks {
		ctrl := ""
		if c.Control != nil {
			ctrl = " (negative control: " + string(c.Control.Status) + ")"
		}
		fmt.Fprintf(w, "  %-18s %-4s%s %s\n", c.Name, c.Effective(), ctrl, firstLine(c.Reason))
	}
	return r.Passed()
}

func labelString(m map[string]string) string {
	var parts []string
	for _, k := range []string{"datapath", "lb", "lbMode", "cilium"} {
		if v := m[k]; v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, " ")
}

func firstLine(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return s
}

// checkNames are the suite's checks, in the order they run (the help is made from the
// suite's own list).
func checkNames() []string {
	var names []string
	for _, c := range conformance.Checks() {
		names = append(names, c.Name)
	}
	return names
}

func testCmd(g *globals) *cobra.Command {
	var f suiteFlags
	var runDir, upgradeTo string
	c := &cobra.Command{
		Use:   "test [LAB]",
		Short: "Run the conformance suite on a running lab; the last line is the run directory",
		Long: `Runs every conformance check (` + strings.Join(checkNames(), ", ") + `;
--check for some) on a running lab, each with its negative control, and writes
report.json, junit.xml, report.html and pcap/ into the run directory. Exit status 1
when a check fails or a negative control does not fail for its declared reason.

--upgrade-to VERSION first moves the lab's Cilium to that release in place, under
traffic (the upgrade-disruption check, v6lab upgrade's steps); the rest of the suite
then judges the upgraded lab.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.labByName(args)
			if err != nil {
				return err
			}
			if runDir == "" {
				// Not under the lab's own directory: down removes that, runs outlive labs.
				if runDir, err = reports.NewRunDir(filepath.Join(g.runtimeOptions(cmd).StateDir, "runs", l.Plan.Lab), time.Now()); err != nil {
					return err
				}
			}
			labArgs := []string{"-v6lab.lab", l.Plan.Lab}
			sf := f
			if upgradeTo != "" {
				if _, err := runtime.UpgradeStep(l.Spec.Spec.Versions.Cilium, upgradeTo, false); err != nil {
					return &exitCode{2, err}
				}
				labArgs = append(labArgs, "-v6lab.upgrade-to", upgradeTo)
				sf.feature = withUpgradeCheck(sf.feature)
			}
			r, err := g.runSuite(cmd, &sf, runDir, labArgs...)
			if err != nil {
				return err
			}
			ok := summarize(cmd.OutOrStdout(), l.Plan.Lab, r)
			fmt.Fprintln(cmd.OutOrStdout(), runDir)
			if !ok {
				return &exitCode{1, errors.New("conformance failed")}
			}
			return nil
		},
	}
	f.add(c)
	c.Flags().StringVarP(&runDir, "output", "o", "", "run directory (default: <state-dir>/runs/<lab>/<time>, which down leaves alone)")
	c.Flags().StringVar(&upgradeTo, "upgrade-to", "", "first upgrade (or downgrade) the lab's Cilium in place to this release, under traffic (upgrade-disruption)")
	return c
}

// defaultMatrix is what `v6lab conformance` runs without --spec: the embedded labs the
// offline path can bring up.
var defaultMatrix = []string{"embedded:default", "embedded:metallb", "embedded:metallb-l2", "embedded:tunnel", "embedded:xdp"}

func conformanceCmd(g *globals) *cobra.Command {
	var f suiteFlags
	var runs string
	var specs, ciliums []string
	var upgrade string
	downgrade := true
	c := &cobra.Command{
		Use:   "conformance",
		Short: "For each lab of the matrix: up, conformance suite, report, down; the last line is the run directory",
		Long: `Brings up each lab of the matrix (--matrix, repeatable; default: ` + strings.Join(defaultMatrix, ", ") + `)
under its own name, runs the conformance suite on it, writes its report into
<run>/<lab>/ and removes the lab. A run directory per lab holds report.json,
junit.xml, report.html, pcap/ and suite.log.

--cilium (repeatable) adds the version axis: every lab of the matrix runs at each
Cilium release given, into <run>/<lab>-cilium-<version>/, and each later release is
compared with the first (what v6lab compare prints, also saved as
<run>/<lab>-compare-<a>-<b>.txt): the pre-upgrade check of a new Cilium release.

--upgrade A,B[,C...] upgrades in place instead: each lab of the matrix comes up at A
and runs the suite; then, for each next release, the upgrade-disruption check moves the
running lab to it under traffic (v6lab upgrade) and the suite runs on the upgraded lab;
last, it goes back one release (a downgrade) the same way (--downgrade=false: not). Each stage writes
<run>/<lab>-upgrade/<n>-<from>-to-<to>/ and is compared with the stage before.`,
		Example: `  v6lab conformance
  v6lab conformance --matrix embedded:metallb --cilium 1.18.4 --cilium 1.20.2
  v6lab conformance --matrix embedded:default --upgrade 1.18.4,1.19.3,1.20.2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(specs) == 0 {
				specs = defaultMatrix
				if g.specPath != "" {
					specs = []string{g.specPath}
				}
			}
			type entry struct {
				spec, cilium, name, dir string
				lab                     *lab.Lab
				report                  *reports.Report
			}
			run, err := reports.NewRunDir(runs, time.Now())
			if err != nil {
				return err
			}
			var matrix []*entry
			var errs []error
			for _, s := range specs {
				l, err := lab.Load(s)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if len(ciliums) == 0 {
					matrix = append(matrix, &entry{spec: s, lab: l, name: "conf-" + l.Plan.Lab, dir: filepath.Join(run, l.Plan.Lab)})
					continue
				}
				for _, v := range ciliums {
					lv, err := l.WithCilium(v)
					if err != nil {
						errs = append(errs, err)
						continue
					}
					matrix = append(matrix, &entry{spec: s, cilium: v, lab: lv,
						name: "conf-" + l.Plan.Lab + "-c" + strings.NewReplacer(".", "", "v", "").Replace(v),
						dir:  filepath.Join(run, l.Plan.Lab+"-cilium-"+strings.TrimPrefix(v, "v"))})
				}
			}
			if len(errs) > 0 {
				return &exitCode{2, errors.Join(errs...)}
			}
			if upgrade != "" {
				if len(ciliums) > 0 {
					return &exitCode{2, errors.New("--upgrade and --cilium: one version axis at a time")}
				}
				chain, err := upgradeChain(upgrade, downgrade)
				if err != nil {
					return &exitCode{2, err}
				}
				allOK := true
				for _, e := range matrix {
					ok, err := g.runUpgradeChain(cmd, &f, run, e.spec, e.lab, chain)
					if err != nil {
						return err
					}
					allOK = ok && allOK
				}
				abs, _ := filepath.Abs(run)
				fmt.Fprintln(cmd.OutOrStdout(), abs)
				if !allOK {
					return &exitCode{1, errors.New("conformance failed")}
				}
				return nil
			}
			allOK := true
			for _, e := range matrix {
				fmt.Fprintf(cmd.OutOrStdout(), "== %s: lab %s, Cilium %s (%s)\n", e.spec, e.name, e.lab.Spec.Spec.Versions.Cilium, e.dir)
				start := time.Now()
				labArgs := []string{"-v6lab.spec", e.spec, "-v6lab.name", e.name}
				if e.cilium != "" {
					labArgs = append(labArgs, "-v6lab.cilium", e.cilium)
				}
				r, err := g.runSuite(cmd, &f, e.dir, labArgs...)
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", e.spec, err)
					allOK = false
					continue
				}
				e.report = r
				allOK = summarize(cmd.OutOrStdout(), e.lab.Plan.Lab, r) && allOK
				fmt.Fprintf(cmd.OutOrStdout(), "  took %s\n", reports.Human(time.Since(start)))
			}
			// The version axis: each later release of a lab against its first.
			for i, base := range matrix {
				if base.cilium == "" || (i > 0 && matrix[i-1].spec == base.spec) {
					continue
				}
				for _, e := range matrix[i+1:] {
					if e.spec != base.spec || base.report == nil || e.report == nil {
						continue
					}
					file := filepath.Join(run, fmt.Sprintf("%s-compare-%s-%s.txt", base.lab.Plan.Lab,
						strings.TrimPrefix(base.cilium, "v"), strings.TrimPrefix(e.cilium, "v")))
					if err := writeComparison(cmd.OutOrStdout(), fmt.Sprintf("%s: Cilium %s -> %s", base.lab.Plan.Lab, base.cilium, e.cilium), file, base.report, e.report); err != nil {
						return err
					}
				}
			}
			abs, _ := filepath.Abs(run)
			fmt.Fprintln(cmd.OutOrStdout(), abs)
			if !allOK {
				return &exitCode{1, errors.New("conformance failed")}
			}
			return nil
		},
	}
	f.add(c)
	c.Flags().StringVar(&runs, "runs", "runs", "directory for run directories")
	c.Flags().StringArrayVar(&specs, "matrix", nil, "a lab spec of the matrix (repeatable; file or embedded:NAME)")
	c.Flags().BoolVar(&downgrade, "downgrade", true, "with --upgrade: end with a downgrade back one release")
	c.Flags().StringVar(&upgrade, "upgrade", "", "Cilium releases A,B[,...]: up at A, then upgrade in place to each next one under traffic and back one step (suite at every stage)")
	c.Flags().StringArrayVar(&ciliums, "cilium", nil, "run every lab of the matrix at this Cilium release (repeatable: the first is the baseline the others are compared with)")
	return c
}

// upgradeChain is the releases of --upgrade A,B,...: each step one minor (v6lab
// upgrade refuses more), then back one step (a downgrade) unless !downgrade.
func upgradeChain(list string, downgrade bool) ([]string, error) {
	var chain []string
	for _, v := range strings.Split(list, ",") {
		if v = strings.TrimPrefix(strings.TrimSpace(v), "v"); v != "" {
			chain = append(chain, v)
		}
	}
	if len(chain) < 2 {
		return nil, fmt.Errorf("--upgrade %q: name the release to start at and at least one to upgrade to (e.g. 1.19.3,1.20.2)", list)
	}
	for i := 1; i < len(chain); i++ {
		if _, err := runtime.UpgradeStep(chain[i-1], chain[i], false); err != nil {
			return nil, fmt.Errorf("--upgrade: %w", err)
		}
	}
	if !downgrade {
		return chain, nil
	}
	return append(chain, chain[len(chain)-2]), nil
}

// runUpgradeChain runs one lab through the chain: the suite at the first release on a
// lab of its own (kept running), then for each next release the suite on that running
// lab with -v6lab.upgrade-to; each stage's report compared with the one before. The lab
// is removed at the end, whatever happened.
func (g *globals) runUpgradeChain(cmd *cobra.Command, f *suiteFlags, run, specPath string, l *lab.Lab, chain []string) (bool, error) {
	w := cmd.OutOrStdout()
	name := "conf-" + l.Plan.Lab + "-up"
	base := filepath.Join(run, l.Plan.Lab+"-upgrade")
	o := g.runtimeOptions(cmd)
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), 5*time.Minute)
		defer cancel()
		_ = runtime.Down(ctx, name, o)
	}()
	sf := *f
	sf.feature = withUpgradeCheck(sf.feature)
	allOK := true
	var prev *reports.Report
	var prevLabel string
	for i, v := range chain {
		label := "cilium-" + v
		args := []string{"-v6lab.spec", specPath, "-v6lab.name", name, "-v6lab.cilium", v, "-v6lab.keep"}
		if i > 0 {
			label = chain[i-1] + "-to-" + v
			args = []string{"-v6lab.lab", name, "-v6lab.upgrade-to", v}
			if i < len(chain)-1 {
				args = append(args, "-v6lab.keep")
			}
		}
		dir := filepath.Join(base, fmt.Sprintf("%d-%s", i, label))
		fmt.Fprintf(w, "== %s: lab %s, stage %d: %s (%s)\n", specPath, name, i, strings.ReplaceAll(label, "-to-", " -> "), dir)
		start := time.Now()
		r, err := g.runSuite(cmd, &sf, dir, args...)
		if err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: stage %d: %v\n", specPath, i, err)
			return false, nil
		}
		ok := summarize(w, l.Plan.Lab, r)
		allOK = ok && allOK
		fmt.Fprintf(w, "  took %s\n", reports.Human(time.Since(start)))
		if i > 0 && !upgraded(r) {
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: stage %d: the lab was not upgraded to %s (upgrade-disruption did not pass or fail); the chain stops\n", specPath, i, v)
			return false, nil
		}
		if prev != nil {
			file := filepath.Join(base, fmt.Sprintf("compare-%s-%s.txt", prevLabel, label))
			if err := writeComparison(w, fmt.Sprintf("%s: %s -> %s", l.Plan.Lab, prevLabel, label), file, prev, r); err != nil {
				return false, err
			}
			// The stage's own report shows it too, next to its upgrade's timeline.
			r.Compared = &reports.Comparison{Against: fmt.Sprintf("stage %d (%s at Cilium %s)", i-1, l.Plan.Lab, chain[i-1]),
				Changes: reports.Compare(prev, r, reports.DefaultTolerance)}
			if err := r.Write(dir); err != nil {
				return false, err
			}
		}
		prev, prevLabel = r, label
	}
	return allOK, nil
}

// upgraded says whether a stage's upgrade happened: its report says from which
// release the lab came.
func upgraded(r *reports.Report) bool { return r.Labels["upgradedFrom"] != "" }

// withUpgradeCheck keeps upgrade-disruption in a --check filter: the upgrade of an
// upgrade stage happens in it.
func withUpgradeCheck(feature string) string {
	if feature == "" {
		return ""
	}
	return "(?:" + feature + ")|^upgrade-disruption$"
}

// writeComparison prints what changed from a to b (v6lab compare's view) under a title
// and saves it, with every figure of both, into file.
func writeComparison(w io.Writer, title, file string, a, b *reports.Report) error {
	var buf strings.Builder
	if err := reports.WriteChanges(&buf, a, b, reports.Compare(a, b, reports.DefaultTolerance)); err != nil {
		return err
	}
	fmt.Fprintf(w, "== %s (every figure: %s)\n%s", title, file, buf.String())
	buf.WriteString("\n")
	if err := reports.WriteFigures(&buf, a, b); err != nil {
		return err
	}
	return os.WriteFile(file, []byte(buf.String()), 0o644)
}
