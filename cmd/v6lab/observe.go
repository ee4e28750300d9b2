package main

import (
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"

	"v6lab.dev/v6lab/labs/runtime"
)

func observeCmd(g *globals) *cobra.Command {
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "observe [LAB] [-- HUBBLE-OBSERVE-FLAGS...]",
		Short: "Show the lab's flows through Hubble: `hubble observe` against the lab's hubble-relay",
		Long: `Run Hubble's CLI (built with the lab's Cilium release, in the agent image) against the
lab's hubble-relay, which gathers every agent's flows. Flags after -- go to
"hubble observe" as they are, e.g.

  v6lab observe -- --last 20
  v6lab observe default -- --follow --verdict DROPPED
  v6lab observe -- --namespace app-a --output jsonpb

Without flags it prints the last 20 flows. --timeout bounds a --follow.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			lab, flags := args, []string{}
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				lab, flags = args[:dash], args[dash:]
			}
			if len(lab) > 1 {
				return badInput(fmt.Errorf("one lab at most (got %v); hubble's flags go after --", lab))
			}
			l, err := g.labByName(lab)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			return runtime.Observe(ctx, l.Plan, g.runtimeOptions(cmd).Kubeconfig(l.Plan.Lab), append([]string{"observe"}, flags...), timeout,
				runtime.ObserveIO{In: cmd.InOrStdin(), Out: cmd.OutOrStdout(), Err: cmd.ErrOrStderr(), TTY: runtime.IsTerminal(cmd.OutOrStdout())})
		},
	}
	c.Flags().DurationVar(&timeout, "timeout", time.Hour, "stop the CLI after this long")
	return c
}
