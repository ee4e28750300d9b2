package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"v6lab.dev/v6lab/labs/render"
)

func renderCmd(g *globals) *cobra.Command {
	var out string
	var imgs imageFlags
	c := &cobra.Command{
		Use:   "render",
		Short: "Write every config file of the lab into a directory (deployable with stock tools)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := g.load()
			if err != nil {
				return err
			}
			opts, err := imgs.options()
			if err != nil {
				return err
			}
			files, err := render.All(l, opts)
			if err != nil {
				return err
			}
			if err := files.Write(out); err != nil {
				return err
			}
			for _, f := range files {
				fmt.Fprintln(cmd.OutOrStdout(), f.Path)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rendered %d files into %s\n", len(files), out)
			return nil
		},
	}
	c.Flags().StringVarP(&out, "output", "o", "", "directory to write into (created if missing)")
	_ = c.MarkFlagRequired("output")
	imgs.add(c)
	return c
}
