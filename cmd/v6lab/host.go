package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"v6lab.dev/v6lab/labs/hostcompat"
	"v6lab.dev/v6lab/labs/runtime/host"
)

func hostCmd() *cobra.Command {
	c := &cobra.Command{Use: "host", Short: "Inspect and prepare this host for labs"}
	c.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "Print the host adaptations this host needs, and why",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := hostcompat.Detect()
			if err != nil {
				return err
			}
			if len(rep.Needs) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "this host needs no adaptation")
			}
			for _, n := range rep.Needs {
				fmt.Fprintf(cmd.OutOrStdout(), "needs %s: %s\n", n.Name, n.Reason)
				if n.Name == hostcompat.CapabilityFilter {
					fmt.Fprintf(cmd.OutOrStdout(), "  the wrapper must be Docker's default runtime: containerlab's deploy creates its containers\n"+
						"  with the engine's default runtime and takes no per-container OCI runtime. `v6lab host undo` restores\n"+
						"  %s (kept as %s) and removes the wrapper.\n", host.DaemonJSON, host.Backup(host.DaemonJSON))
				}
			}
			return nil
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "undo",
		Short: "Take back what host setup changed: daemon.json as it was, the runtime wrapper removed, dockerd restarted (only when no container runs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := host.Undo(cmd.Context())
			for _, c := range res.Changes {
				fmt.Fprintln(cmd.OutOrStdout(), "changed:", c)
			}
			if err == nil && len(res.Changes) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to undo: host setup changed nothing here (Docker, if it installed it, stays)")
			}
			return err
		},
	})
	var wrapper string
	setup := &cobra.Command{
		Use:   "setup",
		Short: "Install and start Docker; apply the host adaptations this host needs (idempotent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if wrapper == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				wrapper = filepath.Join(filepath.Dir(exe), "v6lab-runc")
			}
			res, err := host.Setup(cmd.Context(), wrapper, slog.Default())
			for _, n := range res.Needs {
				fmt.Fprintf(cmd.OutOrStdout(), "host adaptation %s: %s\n", n.Name, n.Reason)
			}
			for _, c := range res.Changes {
				fmt.Fprintln(cmd.OutOrStdout(), "changed:", c)
			}
			if err == nil && len(res.Changes) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "host ready; nothing changed")
			}
			return err
		},
	}
	setup.Flags().StringVar(&wrapper, "runtime-wrapper", "", "built v6lab-runc binary (default: next to v6lab)")
	c.AddCommand(setup)
	return c
}
