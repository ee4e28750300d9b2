package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

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

func upgradeCmd(g *globals) *cobra.Command {
	var imgs imageFlags
	var allowSkip bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "upgrade [LAB] --cilium VERSION",
		Short: "Move a running lab's Cilium to another release in place (pre-flight, Helm upgrade, rollout), one minor at a time",
		Long: `Upgrade (or downgrade) the Cilium of a running lab in place, as Cilium's upgrade guide
says: the new release's images on every node, the pre-flight check (the new agent image
on every node, the cluster's policies validated by the new release), the values of the
new release with upgradeCompatibility set to the minor the cluster was installed with, a
Helm upgrade, then a wait for every agent and the operator to run the new release and be
Ready and every BGP session to be Established. Each Cilium pod's replacement is printed
with its times (the host's clock, the clock of the lab's captures) and kept in the lab's
upgrades.json. A step across more than one minor is refused unless --allow-skip.`,
		Example: `  v6lab up --cilium 1.18.4
  v6lab upgrade --cilium 1.19.3
  v6lab upgrade v6lab-default --cilium 1.20.2
  v6lab upgrade --cilium 1.19.3          # a downgrade, one minor back`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.cilium == "" {
				return &exitCode{2, fmt.Errorf("--cilium: the release to move the lab to (e.g. 1.19.3)")}
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			} else {
				l, err := lab.Load(g.specPath)
				if err != nil {
					return &exitCode{2, err}
				}
				name = l.Plan.Lab
			}
			l, err := g.labByName([]string{name})
			if err != nil {
				return err
			}
			if _, err := runtime.UpgradeStep(l.Spec.Spec.Versions.Cilium, g.cilium, allowSkip); err != nil {
				return &exitCode{2, err}
			}
			o := g.runtimeOptions(cmd)
			if o.Render, err = imgs.options(); err != nil {
				return err
			}
			res, err := runtime.Upgrade(cmd.Context(), l, o, runtime.UpgradeOptions{To: g.cilium, AllowSkip: allowSkip, Timeout: timeout})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s: Cilium %s -> %s (%s; installed with %s) in %s, rollout %s\n", name, res.From, res.To, res.Direction,
				res.InstalledWith, res.Ended.Sub(res.Started).Round(time.Second), res.Ended.Sub(res.RolloutStart).Round(time.Second))
			for _, r := range res.Restarts {
				fmt.Fprintf(w, "  %-8s %-8s %s -> %s", r.Component, r.Node, r.OldPod, r.NewPod)
				if !r.Stopping.IsZero() {
					fmt.Fprintf(w, "  stopping +%s", r.Stopping.Sub(res.RolloutStart).Round(time.Millisecond))
				}
				if !r.Ready.IsZero() {
					fmt.Fprintf(w, "  ready +%s", r.Ready.Sub(res.RolloutStart).Round(time.Millisecond))
				}
				fmt.Fprintln(w)
			}
			return nil
		},
	}
	imgs.add(c)
	c.Flags().BoolVar(&allowSkip, "allow-skip", false, "allow a step across more than one Cilium minor (unsupported by Cilium)")
	c.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "bound on the rollout")
	return c
}
