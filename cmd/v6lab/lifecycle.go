package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"v6lab.dev/v6lab/labs/images"
	"v6lab.dev/v6lab/labs/lab"
	"v6lab.dev/v6lab/labs/render"
	"v6lab.dev/v6lab/labs/render/clab"
	"v6lab.dev/v6lab/labs/runtime"
)

func (g *globals) runtimeOptions(cmd *cobra.Command) runtime.Options {
	o := runtime.Options{StateDir: g.stateDir, Out: cmd.OutOrStdout(), Log: slog.Default()}
	if o.StateDir == "" {
		o.StateDir = runtime.DefaultStateDir()
	}
	return o
}

// labByName loads a lab: by name from its run directory (the spec it was brought up
// with), else from --spec.
func (g *globals) labByName(args []string) (*lab.Lab, error) {
	if len(args) == 0 {
		return g.load()
	}
	o := runtime.Options{StateDir: g.stateDir}
	if o.StateDir == "" {
		o.StateDir = runtime.DefaultStateDir()
	}
	l, err := lab.Load(filepath.Join(o.LabDir(args[0]), "spec.yaml"))
	if err != nil {
		return nil, &exitCode{2, fmt.Errorf("lab %q: %w", args[0], err)}
	}
	return l, nil
}

// imageFlags are the image choices of up and render.
type imageFlags struct {
	source, router, host string
}

func (f *imageFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.source, "images", "offline", "offline (built here from fixtures/images) or online (public images, needs a registry)")
	c.Flags().StringVar(&f.router, "router-image", "", "use this image for the FRR routers")
	c.Flags().StringVar(&f.host, "host-image", "", "use this image for the client and world hosts")
}

func (f *imageFlags) options() (render.Options, error) {
	src := images.Source(f.source)
	if src != images.Offline && src != images.Online {
		return render.Options{}, &exitCode{2, fmt.Errorf("--images: %q is neither offline nor online", f.source)}
	}
	return render.Options{Source: src, Images: clab.Images{Router: f.router, Host: f.host}}, nil
}

func upCmd(g *globals) *cobra.Command {
	var imgs imageFlags
	var underlayOnly, noCNI bool
	c := &cobra.Command{
		Use:   "up",
		Short: "Stand the lab up: host setup, images, render, deploy, BGP, Kubernetes, Cilium (idempotent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := g.load()
			if err != nil {
				return err
			}
			o := g.runtimeOptions(cmd)
			if o.Render, err = imgs.options(); err != nil {
				return err
			}
			o.UnderlayOnly, o.NoCNI = underlayOnly, noCNI
			if err := runtime.Up(cmd.Context(), l, o); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab %s is up; run directory: %s\n", l.Plan.Lab, o.LabDir(l.Plan.Lab))
			return nil
		},
	}
	imgs.add(c)
	c.Flags().BoolVar(&underlayOnly, "underlay-only", false, "deploy routers and hosts only, no Kubernetes nodes")
	c.Flags().BoolVar(&noCNI, "no-cni", false, "stop once the Kubernetes nodes are registered: no Cilium")
	return c
}

func kubeconfigCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "kubeconfig [LAB]",
		Short: "Print the lab's admin kubeconfig (the API server through the management network)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.labByName(args)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(g.runtimeOptions(cmd).Kubeconfig(l.Plan.Lab))
			if err != nil {
				return fmt.Errorf("lab %s has no kubeconfig (is it up with Kubernetes nodes?): %w", l.Plan.Lab, err)
			}
			_, err = cmd.OutOrStdout().Write(data)
			return err
		},
	}
}

func statusCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status [LAB]",
		Short: "Show the lab's members, addresses, BGP sessions and learned prefixes",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.labByName(args)
			if err != nil {
				return err
			}
			st, err := runtime.GetStatus(cmd.Context(), l.Plan, g.runtimeOptions(cmd).Kubeconfig(l.Plan.Lab))
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			if len(st.Members) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "lab %s is not running\n", l.Plan.Lab)
				return nil
			}
			return st.Write(cmd.OutOrStdout())
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return c
}

func downCmd(g *globals) *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "down [LAB]",
		Short: "Remove the lab completely (containers, networks, netns links, run directory)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := g.runtimeOptions(cmd)
			if all {
				return runtime.DownAll(cmd.Context(), o)
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			} else {
				l, err := g.load()
				if err != nil {
					return err
				}
				name = l.Plan.Lab
			}
			return runtime.Down(cmd.Context(), name, o)
		},
	}
	c.Flags().BoolVar(&all, "all", false, "remove every v6lab lab on this host")
	return c
}
