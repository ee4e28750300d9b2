package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"v6lab.dev/v6lab/reports"
)

func reportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "report RUN_DIR",
		Short: "Re-render report.html and junit.xml of a run from its report.json",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := reports.Read(args[0])
			if err != nil {
				return badInput(err)
			}
			if err := r.Write(args[0]); err != nil {
				return err
			}
			pass, fail, skip := r.Counts()
			fmt.Fprintf(cmd.OutOrStdout(), "%d passed, %d failed, %d skipped\n%s\n", pass, fail, skip, args[0])
			return nil
		},
	}
}

func compareCmd() *cobra.Command {
	var asJSON, all bool
	tol := reports.DefaultTolerance
	c := &cobra.Command{
		Use:   "compare RUN_A RUN_B",
		Short: "Verdicts that changed and figures that moved from run A to run B; exit 1 on a regression (pre-upgrade check)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := reports.Read(args[0])
			if err != nil {
				return badInput(err)
			}
			b, err := reports.Read(args[1])
			if err != nil {
				return badInput(err)
			}
			changes := reports.Compare(a, b, tol)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(changes); err != nil {
					return err
				}
			} else {
				if err := reports.WriteChanges(cmd.OutOrStdout(), a, b, changes); err != nil {
					return err
				}
				if all {
					fmt.Fprintln(cmd.OutOrStdout())
					if err := reports.WriteFigures(cmd.OutOrStdout(), a, b); err != nil {
						return err
					}
				}
			}
			if reports.Regressed(changes) {
				return &exitCode{1, errors.New("regression from A to B")}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the changes as JSON")
	c.Flags().BoolVar(&all, "figures", false, "also print every measured figure of both runs side by side")
	c.Flags().Float64Var(&tol.Relative, "tolerance", tol.Relative, "relative change a figure may move without counting (0.2 = 20%)")
	c.Flags().Float64Var(&tol.Absolute, "tolerance-abs", tol.Absolute, "absolute change a figure may move without counting (ms for timings)")
	return c
}
