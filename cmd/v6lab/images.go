package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"v6lab.dev/v6lab/fixtures"
	"v6lab.dev/v6lab/labs/ciliumbuild"
	"v6lab.dev/v6lab/labs/images"
	"v6lab.dev/v6lab/labs/runtime"
	"v6lab.dev/v6lab/labs/xexec"
	"v6lab.dev/v6lab/reports"
)

func imagesCmd() *cobra.Command {
	c := &cobra.Command{Use: "images", Short: "Build and list the lab's offline images"}
	var releases []string
	var programsOnly bool
	build := &cobra.Command{
		Use:   "build",
		Short: "Build every image whose recipe changed (debootstrap base, then layers); skip the rest",
		Long: `Build every image whose recipe changed (debootstrap base, then layers); skip the rest.

--cilium builds a Cilium release ahead of time, any release the Go module proxy serves:
its programs from the release's own Go module (cached by content key in ~/.cache/v6lab/cilium,
linked into bin/cilium/<release>), then its agent and operator images. v6lab up and
v6lab upgrade do the same on demand.`,
		Example: `  v6lab images build
  v6lab images build --cilium 1.19.5
  v6lab images build --cilium 1.20.2 --cilium 1.19.3 --programs-only   # no Docker needed (make cilium)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var names []string
			for _, v := range releases {
				c, err := images.CiliumFor(v)
				if err != nil {
					return &exitCode{2, fmt.Errorf("--cilium: %w", err)}
				}
				msg, err := runtime.BuildCilium(cmd.Context(), "", c, cmd.OutOrStdout())
				if err != nil {
					return err
				}
				if msg == "" {
					msg = "Cilium " + c.Version + " is built (cache)"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "✓ %s: bin/%s\n", msg, c.BinDir)
				names = append(names, c.Images()...)
			}
			if programsOnly {
				if len(releases) == 0 {
					return &exitCode{2, fmt.Errorf("--programs-only goes with --cilium")}
				}
				return nil
			}
			b := images.Builder{FS: fixtures.Images, Log: slog.Default()}
			res, err := b.Build(cmd.Context(), names...)
			for _, r := range res {
				if r.Built {
					fmt.Fprintf(cmd.OutOrStdout(), "✓ built %s (%s)\n", r.Ref, reports.Human(r.Elapsed))
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "✓ %s is up to date (recipe unchanged)\n", r.Ref)
				}
			}
			return err
		},
	}
	build.Flags().StringArrayVar(&releases, "cilium", nil, "build this Cilium release's programs and images (repeatable; e.g. 1.19.5)")
	build.Flags().BoolVar(&programsOnly, "programs-only", false, "with --cilium: build the release's programs, BPF sources and chart, not its images")
	c.AddCommand(build)
	c.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the Cilium releases built here, and v6lab images with their recipe key and size",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := listCilium(cmd); err != nil {
				return err
			}
			out, err := xexec.Run(cmd.Context(), xexec.Cmd{Name: "docker", Args: []string{"images",
				"--filter", "label=" + images.LabelKey, "--format", "{{.Repository}}:{{.Tag}}\t{{.Size}}\t{{.CreatedSince}}"}})
			if err != nil {
				return err
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
				if images.Current(fixtures.Images, f[0]) {
					state = "current"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, key, f[1], f[2], state)
			}
			return tw.Flush()
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "prune",
		Short: "Remove v6lab images whose recipe changed since they were built (stale keys), their archives and the seeded node stores holding them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			removed, err := images.Prune(cmd.Context(), fixtures.Images)
			if err == nil {
				var files []string
				files, err = runtime.PruneCache(fixtures.Images)
				removed = append(removed, files...)
			}
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

// listCilium prints the Cilium releases built from their Go modules (the cache), which
// one is linked into the bin directory, and the substitutes each needed.
func listCilium(cmd *cobra.Command) error {
	builds, err := ciliumbuild.List(runtime.CacheDir())
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if len(builds) == 0 {
		fmt.Fprintln(w, "CILIUM: no release built yet (v6lab images build --cilium X.Y.Z, or v6lab up builds the spec's)")
		fmt.Fprintln(w)
		return nil
	}
	exe, _ := os.Executable()
	bin := filepath.Dir(exe)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CILIUM\tKEY\tBUILT\tTOOK\tLINKED\tSUBSTITUTES")
	for _, b := range builds {
		linked := "-"
		if t, err := os.Readlink(filepath.Join(bin, ciliumbuild.BinDir(ciliumbuild.Release(b.Version)))); err == nil && t == b.Dir {
			linked = "bin/" + ciliumbuild.BinDir(ciliumbuild.Release(b.Version))
		}
		var subs []string
		for _, s := range b.Substitutes {
			subs = append(subs, s.Using)
		}
		if len(subs) == 0 {
			subs = []string{"none"}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", b.Version, b.Key, b.BuiltAt.Local().Format("2006-01-02 15:04"),
			reports.Human(b.Took()), linked, strings.Join(subs, "; "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return nil
}
