// Command v6lab stands up IPv6-only Kubernetes labs with Cilium and runs conformance
// suites against them. This package only parses flags, calls labs/*, and prints.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"v6lab.dev/v6lab/labs/lab"
)

// exitCode lets a command choose its exit status (1 = failed, 2 = bad input).
type exitCode struct {
	code int
	err  error
}

func (e *exitCode) Error() string { return e.err.Error() }
func (e *exitCode) Unwrap() error { return e.err }

type globals struct {
	specPath string
	cilium   string // --cilium: the spec's Cilium release replaced
	logLevel string
	stateDir string
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run executes the CLI and returns the process exit status.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stderr)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	// Ctrl-C or SIGTERM cancels the root context: every step and external command
	// stops, undoes what it injected, and leaves a lab that down removes.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		code := 1
		var ec *exitCode
		if errors.As(err, &ec) {
			code = ec.code
		} else if isUsageError(err) {
			code = 2
		}
		fmt.Fprintln(stderr, "error:", err)
		return code
	}
	return 0
}

func newRoot(stderr io.Writer) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "v6lab",
		Short:         "IPv6-only Kubernetes labs with Cilium, and conformance proven from packets",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
				return &exitCode{2, fmt.Errorf("--log-level: %w", err)}
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})))
			return nil
		},
	}
	root.PersistentFlags().StringVar(&g.specPath, "spec", "", "lab spec file (default: the embedded default lab; embedded:<name> picks another embedded lab)")
	root.PersistentFlags().StringVar(&g.cilium, "cilium", "", "Cilium release instead of the spec's spec.versions.cilium (e.g. 1.18.4; conformance: repeatable, the version axis)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "debug, info, warn or error")
	root.PersistentFlags().StringVar(&g.stateDir, "state-dir", "", "where labs keep their run directories (default $V6LAB_STATE_DIR or ~/.local/state/v6lab)")
	root.AddCommand(planCmd(g), validateCmd(g), renderCmd(g), hostCmd(), imagesCmd(), upCmd(g), upgradeCmd(g), statusCmd(g), downCmd(g), captureCmd(g), observeCmd(g), analyzeCmd(), kubeconfigCmd(g), reportCmd(), compareCmd(), testCmd(g), conformanceCmd(g))
	return root
}

// isUsageError reports cobra's flag and argument errors, which exit with status 2.
func isUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown flag", "unknown command", "unknown shorthand", "required flag", "accepts ", "invalid argument", "flag needs"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// load loads the lab named by --spec; spec problems exit with status 2.
func (g *globals) load() (*lab.Lab, error) {
	l, err := lab.Load(g.specPath)
	if err == nil && g.cilium != "" {
		l, err = l.WithCilium(g.cilium)
	}
	if err != nil {
		return nil, &exitCode{2, err}
	}
	return l, nil
}
