package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	probewire "v6lab.dev/v6lab/fixtures/probe/wire"
)

// Running v6lab-probe in lab members (its wire types: fixtures/probe/wire).

// ProbeSummary is what `v6lab-probe send` prints (its wire type).
type ProbeSummary = probewire.SendSummary

// HTTPSummary is what `v6lab-probe http` prints.
type HTTPSummary = probewire.HTTPSummary

// ProbeHTTP runs `v6lab-probe http` from a lab member against http://[vip]:HTTPPort/.
// Failed requests make the probe exit non-zero: its summary is the verdict, so only a
// run without one is an error.
func (x *Lab) ProbeHTTP(ctx context.Context, member string, vip netip.Addr, count int) (HTTPSummary, error) {
	return x.ProbeHTTPTo(ctx, member, netip.AddrPortFrom(vip, HTTPPort), count, 2*time.Second)
}

// ProbeHTTPTo is ProbeHTTP to any address and port (a NodePort), each request
// waiting at most timeout.
func (x *Lab) ProbeHTTPTo(ctx context.Context, member string, to netip.AddrPort, count int, timeout time.Duration) (HTTPSummary, error) {
	out, err := x.Exec(ctx, member, httpArgs(to, count, timeout)...)
	return httpSummary(out, err)
}

// PodProbeHTTP is ProbeHTTPTo from a pod (kubectl exec).
func (x *Lab) PodProbeHTTP(ctx context.Context, p Pod, to netip.AddrPort, count int, timeout time.Duration) (HTTPSummary, error) {
	out, err := x.PodExec(ctx, p, httpArgs(to, count, timeout)...)
	return httpSummary(out, err)
}

func httpArgs(to netip.AddrPort, count int, timeout time.Duration) []string {
	return []string{"v6lab-probe", "http", "--url", fmt.Sprintf("http://%s/", to), "--count", fmt.Sprint(count), "--timeout", timeout.String()}
}

func httpSummary(out string, err error) (HTTPSummary, error) {
	var hs HTTPSummary
	if jerr := decodeJSON(out, &hs); jerr != nil {
		return hs, fmt.Errorf("http: %w (%v)", jerr, err)
	}
	return hs, nil
}

// ProbeUDP runs `v6lab-probe send --to to` from a lab member with the given options
// (--count, --interval, --wait, --duration); like ProbeHTTP, lost probes are in the
// summary, not an error.
func (x *Lab) ProbeUDP(ctx context.Context, member string, to netip.AddrPort, opts ...string) (ProbeSummary, error) {
	out, err := x.Exec(ctx, member, append([]string{"v6lab-probe", "send", "--to", to.String()}, opts...)...)
	return sendSummary(out, err)
}

// PodProbeUDP is ProbeUDP from a pod (kubectl exec).
func (x *Lab) PodProbeUDP(ctx context.Context, p Pod, to netip.AddrPort, opts ...string) (ProbeSummary, error) {
	out, err := x.PodExec(ctx, p, append([]string{"v6lab-probe", "send", "--to", to.String()}, opts...)...)
	return sendSummary(out, err)
}

func sendSummary(out string, err error) (ProbeSummary, error) {
	var ps ProbeSummary
	if jerr := decodeJSON(out, &ps); jerr != nil {
		return ps, fmt.Errorf("send: %w (%v)", jerr, err)
	}
	return ps, nil
}

// TCPSummary is what `v6lab-probe tcp` prints.
type TCPSummary = probewire.TCPSummary

// ProbeTCP runs `v6lab-probe tcp --to to` from a lab member (--conns, --interval,
// --duration); a failed connection is in the summary (the wire judges it), not an error.
func (x *Lab) ProbeTCP(ctx context.Context, member string, to netip.AddrPort, opts ...string) (TCPSummary, error) {
	var ts TCPSummary
	out, err := x.Exec(ctx, member, tcpProbeArgs(to, opts...)...)
	if jerr := decodeJSON(out, &ts); jerr != nil {
		return ts, fmt.Errorf("tcp: %w (%v)", jerr, err)
	}
	return ts, nil
}

// tcpProbeArgs is the command line of `v6lab-probe tcp` to a destination.
func tcpProbeArgs(to netip.AddrPort, opts ...string) []string {
	return append([]string{"v6lab-probe", "tcp", "--to", to.String()}, opts...)
}

// tcpProbePattern matches the command line (pkill -f) of every `v6lab-probe tcp` to a
// destination, and of no other.
func tcpProbePattern(to netip.AddrPort) string {
	return "^" + regexp.QuoteMeta(strings.Join(tcpProbeArgs(to), " ")) + "( |$)"
}

func decodeJSON(out string, v any) error {
	i := strings.Index(out, "{")
	if i < 0 {
		return fmt.Errorf("no JSON in %q", out)
	}
	return json.Unmarshal([]byte(out[i:]), v)
}
