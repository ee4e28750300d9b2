package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"v6lab.dev/v6lab/labs/verdict"
)

// analyzeCmd is the user-facing contract of the analyzers: each prints one JSON object
// with at least "check", "pass" and the evidence; exit 1 when the check fails (a run
// without any matching packet fails), exit 2 on bad input.
func analyzeCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "analyze",
		Short: "Judge captures (pcap or pcapng, from the lab or anywhere): source, outage, return-path, ipv4, pairs",
	}
	var proto string
	var dport uint16
	match := func() (verdict.Match, error) {
		p, err := verdict.ParseProto(proto)
		if err != nil {
			return verdict.Match{}, badInput(err)
		}
		return verdict.Match{Proto: p, DstPort: dport}, nil
	}
	addMatch := func(cmd *cobra.Command) {
		cmd.Flags().StringVar(&proto, "proto", "", "udp, tcp or icmp6 (default: any)")
		cmd.Flags().Uint16Var(&dport, "dport", 0, "destination port (default: any)")
	}
	// judge reads every file, runs one check over all their packets and reports it.
	judge := func(check func(verdict.Match, []verdict.Packet) (v any, pass bool, err error)) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, files []string) error {
			m, err := match()
			if err != nil {
				return err
			}
			pkts, err := readAll(files)
			if err != nil {
				return err
			}
			v, pass, err := check(m, pkts)
			if err != nil {
				return err
			}
			return report(cmd, v, pass)
		}
	}

	var expect string
	source := &cobra.Command{
		Use:   "source --expect PREFIX[,PREFIX...] FILE...",
		Short: "Every matching IPv6 packet's source lies in one of the prefixes (masquerade / GUA pool check)",
		Args:  cobra.MinimumNArgs(1),
		RunE: judge(func(m verdict.Match, pkts []verdict.Packet) (any, bool, error) {
			var prefixes []netip.Prefix
			for _, s := range strings.Split(expect, ",") {
				p, err := netip.ParsePrefix(strings.TrimSpace(s))
				if err != nil {
					return nil, false, badInput(fmt.Errorf("--expect: %w", err))
				}
				prefixes = append(prefixes, p)
			}
			v := verdict.Source(pkts, m, prefixes)
			return v, v.Pass, nil
		}),
	}
	source.Flags().StringVar(&expect, "expect", "", "comma-separated prefixes the sources must lie in")
	_ = source.MarkFlagRequired("expect")
	addMatch(source)

	var minGap, maxOutage time.Duration
	var maxLost float64
	var outageClient string
	outage := &cobra.Command{
		Use:   "outage FILE...",
		Short: "Loss windows in the matching packet stream (the replies, when both directions were captured)",
		Long: `Finds loss windows: gaps longer than --min-gap between consecutive matching
packets. When the files hold both directions of a request/reply stream (told apart by
addresses, ports and which appeared first), the replies are measured: requests after
the last reply are an unrecovered window (exit 1), and requests without a reply are
lost. More than --max-lost of the probes lost fails even when no window exceeds
--max-outage. The files are read in passes, in the order given (give them in time
order); no packet is held in memory.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			m, err := match()
			if err != nil {
				return err
			}
			o := verdict.OutageOptions{MinGap: minGap, MaxOutage: maxOutage, MaxLost: maxLost}
			if outageClient != "" {
				if o.Client, err = netip.ParseAddr(outageClient); err != nil {
					return badInput(fmt.Errorf("--client: %w", err))
				}
			}
			v, err := verdict.OutageOf(verdict.Files(files...), m, o)
			if err != nil {
				return badInput(err)
			}
			return report(cmd, v, v.Pass)
		},
	}
	outage.Flags().DurationVar(&minGap, "min-gap", 0, "a gap longer than this is a loss window (default: 3x the median inter-arrival)")
	outage.Flags().DurationVar(&maxOutage, "max-outage", 0, "fail when a window is longer than this")
	outage.Flags().Float64Var(&maxLost, "max-lost", 0.01, "fail when more than this fraction of the probes was lost (negative: no limit)")
	outage.Flags().StringVar(&outageClient, "client", "", "the address sending the requests (packets to it are the replies); default: told from the flows")
	addMatch(outage)

	var vip, client, expectFile string
	returnPath := &cobra.Command{
		Use:   "return-path --vip ADDR --client ADDR FILE...",
		Short: "Per file, the replies from the VIP to the client; --expect-file: all of them there and none elsewhere",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			m, err := match()
			if err != nil {
				return err
			}
			v, err1 := netip.ParseAddr(vip)
			cl, err2 := netip.ParseAddr(client)
			if err := errors.Join(err1, err2); err != nil {
				return badInput(fmt.Errorf("--vip/--client: %w", err))
			}
			byFile := map[string][]verdict.Packet{}
			for _, f := range files {
				pkts, err := verdict.ReadFile(f)
				if err != nil {
					return badInput(err)
				}
				byFile[filepath.Clean(f)] = pkts
			}
			if expectFile != "" {
				expectFile = filepath.Clean(expectFile)
				if _, ok := byFile[expectFile]; !ok {
					return badInput(fmt.Errorf("--expect-file %s is not among the files", expectFile))
				}
			}
			r := verdict.ReturnPath(byFile, v, cl, m, expectFile)
			return report(cmd, r, r.Pass)
		},
	}
	returnPath.Flags().StringVar(&vip, "vip", "", "the VIP (source of the replies)")
	returnPath.Flags().StringVar(&client, "client", "", "the client (destination of the replies)")
	returnPath.Flags().StringVar(&expectFile, "expect-file", "", "the capture file every reply must be in")
	_ = returnPath.MarkFlagRequired("vip")
	_ = returnPath.MarkFlagRequired("client")
	addMatch(returnPath)

	ipv4 := &cobra.Command{
		Use:   "ipv4 FILE...",
		Short: "Pass iff the files hold frames and none of them is IPv4 (or ARP)",
		Args:  cobra.MinimumNArgs(1),
		RunE: judge(func(_ verdict.Match, pkts []verdict.Packet) (any, bool, error) {
			v := verdict.IPv4(pkts)
			return v, v.Pass, nil
		}),
	}

	pairs := &cobra.Command{
		Use:   "pairs FILE...",
		Short: "Pair v6lab probe requests with replies: every request answered, by whom, RTT, the source the responder saw",
		Args:  cobra.MinimumNArgs(1),
		RunE: judge(func(m verdict.Match, pkts []verdict.Packet) (any, bool, error) {
			v := verdict.Pairs(pkts, m)
			return v, v.Pass, nil
		}),
	}
	addMatch(pairs)

	c.AddCommand(source, outage, returnPath, ipv4, pairs)
	return c
}

func badInput(err error) error { return &exitCode{2, err} }

func readAll(files []string) ([]verdict.Packet, error) {
	var all []verdict.Packet
	for _, f := range files {
		pkts, err := verdict.ReadFile(f)
		if err != nil {
			return nil, badInput(err)
		}
		all = append(all, pkts...)
	}
	return all, nil
}

// report prints the verdict as JSON; a failed check exits 1.
func report(cmd *cobra.Command, v any, pass bool) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	if !pass {
		return &exitCode{1, errors.New("check failed")}
	}
	return nil
}
