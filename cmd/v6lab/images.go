package main

import (
	"fmt"
	"log/slog"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"v6lab.dev/v6lab/fixtures"
	"v6lab.dev/v6lab/labs/images"
	"v6lab.dev/v6lab/labs/xexec"
	"v6lab.dev/v6lab/reports"
)

func imagesCmd() *cobra.Command {
	c := &cobra.Command{Use: "images", Short: "Build and list the lab's offline images"}
	c.AddCommand(&cobra.Command{
		Use:   "build",
		Short: "Build every image whose recipe changed (debootstrap base, then layers); skip the rest",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := images.Builder{FS: fixtures.Images, Log: slog.Default()}
			res, err := b.Build(cmd.Context())
			for _, r := range res {
				if r.Built {
					fmt.Fprintf(cmd.OutOrStdout(), "✓ built %s (%s)\n", r.Ref, reports.Human(r.Elapsed))
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "✓ %s is up to date (recipe unchanged)\n", r.Ref)
				}
			}
			return err
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List v6lab images with their recipe key and size",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			refs, err := images.Refs(fixtures.Images)
			if err != nil {
				return err
			}
			out, err := xexec.Run(cmd.Context(), xexec.Cmd{Name: "docker", Args: []string{"images",
				"--filter", "label=" + images.LabelKey, "--format", "{{.Repository}}:{{.Tag}}\t{{.Size}}\t{{.CreatedSince}}"}})
			if err != nil {
				return err
			}
			current := map[string]bool{}
			for _, r := range refs {
				current[r] = true
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "IMAGE\tKEY\tSIZE\tCREATED\tSTATE")
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				f := strings.Split(line, "\t")
				if len(f) < 3 {
					continue
				}
				name, key, _ := strings.Cut(f[0], ":")
				state := "stale (recipe changed)"
				if current[f[0]] {
					state = "current"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, key, f[1], f[2], state)
			}
			return tw.Flush()
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "prune",
		Short: "Remove v6lab images whose recipe changed since they were built (stale keys)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			removed, err := images.Prune(cmd.Context(), fixtures.Images)
			for _, r := range removed {
				fmt.Fprintln(cmd.OutOrStdout(), "removed", r)
			}
			if err == nil && len(removed) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing stale")
			}
			return err
		},
	})
	return c
}
