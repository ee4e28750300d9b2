package conformance

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/e2e-framework/pkg/env"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"v6lab.dev/v6lab/fixtures"
	"v6lab.dev/v6lab/labs/images"
	"v6lab.dev/v6lab/labs/lab"
	"v6lab.dev/v6lab/labs/runtime"
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
				_ = runtime.Down(context.WithoutCancel(ctx), l.Plan.Lab, o)
			}
		}()
		if own {
			var out bytes.Buffer
			o.Out = &out
			// A leftover of an interrupted run goes first.
			_ = runtime.Down(ctx, l.Plan.Lab, o)
			if err := runtime.Up(ctx, l, o); err != nil {
				return ctx, fmt.Errorf("up: %w\n%s", err, out.String())
			}
		}
		x, err := Open(l, o, runDir(), kubectl(o.BinDir), hostImage())
		if err != nil {
			return ctx, err
		}
		cfg.WithKubeconfigFile(x.Kubeconfig)
		if err := x.Deploy(ctx); err != nil {
			return ctx, err
		}
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
	for _, p := range []string{"containerlab", "k8s/kubelet", "k8s/kubectl", "cilium/chart"} {
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

// feature makes an e2e-framework feature of a check: an assessment on the lab as it
// is, then its negative control on the lab broken on purpose. The report gets the
// check's verdict with its control's; a check that does not apply is skipped, with
// the reason in the report.
func feature(c Check) features.Feature {
	var rec reports.Check
	b := features.New(c.Name).
		WithLabel("check", c.Name).
		Setup(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			x := theLab
			s := x.Lab.Spec.Spec
			rec = reports.Check{Name: c.Name, Labels: map[string]string{
				"datapath": string(s.Datapath), "lb": string(s.LoadBalancer.Announcer), "cilium": s.Versions.Cilium}}
			return ctx
		}).
		Assess("passes on the lab", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			x := theLab
			if why := c.Applies(x); why != "" {
				rec.Status, rec.Reason = reports.Skip, why
				x.Record(rec)
				t.Skip(why)
			}
			res, err := c.Run(ctx, x, false)
			fill(&rec, res, err)
			x.Record(rec)
			if rec.Status != reports.Pass {
				t.Errorf("%s failed: %s", c.Name, rec.Reason)
			}
			t.Logf("%s: %s %v", c.Name, rec.Reason, rec.Figures)
			return ctx
		}).
		Assess("negative control fails", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			x := theLab
			if rec.Status == reports.Skip {
				t.Skip(rec.Reason)
			}
			ctrl := &reports.Control{Breakage: c.Breakage}
			restore, err := c.Break(ctx, x)
			var res Result
			if err == nil {
				res, err = c.Run(ctx, x, true)
			}
			if restore != nil {
				rctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				rerr := restore(rctx)
				if rerr == nil { // the next check starts on a settled datapath
					rerr = x.WaitDatapath(rctx, 3*time.Minute)
				}
				if rerr != nil {
					t.Errorf("restoring the lab after %s's control: %v", c.Name, rerr)
				}
				cancel()
			}
			switch {
			case err != nil:
				ctrl.Status, ctrl.Reason = reports.Skip, "the control could not run: "+err.Error()
				t.Errorf("%s: %s", c.Name, ctrl.Reason)
			case res.Pass:
				ctrl.Status, ctrl.Reason = reports.Pass, "the check passed on a broken lab: it cannot fail, so it proves nothing"
				t.Errorf("%s: %s", c.Name, ctrl.Reason)
			default:
				ctrl.Status, ctrl.Reason = reports.Fail, res.Reason
				t.Logf("%s control failed as it must: %s", c.Name, res.Reason)
			}
			rec.Control = ctrl
			rec.Pcaps = append(rec.Pcaps, res.Pcaps...)
			for k, v := range res.Figures {
				if rec.Figures == nil {
					rec.Figures = map[string]float64{}
				}
				rec.Figures["control_"+k] = v
			}
			x.Record(rec)
			return ctx
		})
	return b.Feature()
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
	rec.Reason, rec.Figures, rec.Evidence, rec.Pcaps, rec.Timeline = res.Reason, res.Figures, res.Evidence, res.Pcaps, res.Timeline
}

func TestConformance(t *testing.T) {
	if skipAll != "" {
		if os.Getenv("CI") != "" && !testing.Short() {
			t.Fatal(skipAll)
		}
		t.Skip(skipAll)
	}
	var fs []features.Feature
	for _, c := range Checks() {
		fs = append(fs, feature(c))
	}
	testenv.Test(t, fs...)
}

// The report names every check the suite has.
func TestChecksAreNamed(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Checks() {
		if c.Name == "" || seen[c.Name] || c.Run == nil || c.Break == nil || c.Applies == nil || strings.TrimSpace(c.Breakage) == "" {
			t.Errorf("check %q is incomplete or repeated", c.Name)
		}
		seen[c.Name] = true
	}
}
