package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/reports"
)

func captureCmd(g *globals) *cobra.Command {
	var (
		at       []string
		duration time.Duration
		count    int
		proto    string
		port     uint16
		ipv6Only bool
		out      string
	)
	c := &cobra.Command{
		Use:   "capture [LAB] --at MEMBER:IFACE [--at ...]",
		Short: "Capture on lab interfaces (pcapng, kernel timestamps, one clock), bounded by --duration and --count",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.labByName(args)
			if err != nil {
				return err
			}
			var specs []capture.Spec
			for _, a := range at {
				member, iface, ok := strings.Cut(a, ":")
				if !ok {
					return badInput(fmt.Errorf("--at %q: want MEMBER:IFACE (e.g. leaf1:eth1)", a))
				}
				specs = append(specs, capture.Spec{Name: member + "-" + iface, Container: l.Plan.ContainerName(member),
					Iface: iface, MaxPackets: count, Filter: capture.Filter{Proto: proto, Port: port, IPv6Only: ipv6Only}})
			}
			if len(specs) == 0 {
				return badInput(fmt.Errorf("give at least one --at MEMBER:IFACE"))
			}
			if out == "" {
				o := g.runtimeOptions(cmd)
				// Outside the lab's run directory, which down removes: captures outlive labs.
				if out, err = reports.NewRunDir(filepath.Join(o.StateDir, "captures", l.Plan.Lab), time.Now()); err != nil {
					return err
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			s, err := capture.Start(ctx, out, duration, specs...)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "capturing for %s (Ctrl-C stops)\n", duration)
			res := s.Wait()
			for _, r := range res {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%d packets\t%d dropped\n", r.File, r.Packets, r.Drops)
			}
			return capture.RequireTraffic(res)
		},
	}
	c.Flags().StringArrayVar(&at, "at", nil, "capture point MEMBER:IFACE (repeatable)")
	c.Flags().DurationVar(&duration, "duration", 10*time.Second, "how long to capture")
	c.Flags().IntVar(&count, "count", 0, "stop each capture after this many packets (0: no limit)")
	c.Flags().StringVar(&proto, "proto", "", "kernel filter: udp, tcp or icmp6 (IPv6 only)")
	c.Flags().Uint16Var(&port, "port", 0, "kernel filter: this source or destination port (with --proto)")
	c.Flags().BoolVar(&ipv6Only, "ipv6", false, "kernel filter: IPv6 frames only")
	c.Flags().StringVarP(&out, "output", "o", "", "directory for the pcapng files (default: <state-dir>/captures/<lab>/<time>, which down leaves alone)")
	return c
}
