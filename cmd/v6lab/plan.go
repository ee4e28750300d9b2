package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"v6lab.dev/v6lab/labs/spec"
)

func planCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "plan",
		Short: "Print the lab's IPv6 address plan (the seed's tree, or --json)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := g.load()
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(l.Plan)
			}
			return l.Plan.WriteTree(cmd.OutOrStdout())
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	return c
}

func validateCmd(g *globals) *cobra.Command {
	var printDefaults bool
	c := &cobra.Command{
		Use:   "validate",
		Short: "Check a lab spec and its address plan; print every problem with its field path",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := g.load()
			if err != nil {
				return err
			}
			if printDefaults {
				out, err := spec.Marshal(l.Spec)
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(out)
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: lab %q is valid (%d routers, %d nodes, %d hosts, %d applications)\n",
				l.Source, l.Spec.Metadata.Name, len(l.Plan.Routers), len(l.Plan.KubeNodes), len(l.Plan.Hosts), len(l.Plan.Apps))
			return nil
		},
	}
	c.Flags().BoolVar(&printDefaults, "print", false, "print the spec with every default filled in")
	return c
}
