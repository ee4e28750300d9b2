// Command v6lab-runc is an OCI runtime wrapper for hosts whose capability bounding set
// lacks capabilities that privileged containers ask for (see labs/hostcompat). It
// rewrites the bundle's config.json (create, run) or the --process file (exec) so that
// it asks only for what the host can grant, then execs the real runc with the same
// arguments. `v6lab host setup` installs it only on hosts that need it; elsewhere it is
// never used.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"v6lab.dev/v6lab/labs/hostcompat"
)

// rlimits maps OCI rlimit names to Linux resource numbers.
var rlimits = map[string]int{
	"RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
	"RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
	"RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
	"RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}

func main() {
	runc := os.Getenv("V6LAB_RUNC")
	if runc == "" {
		for _, c := range []string{"/usr/sbin/runc", "/usr/bin/runc"} {
			if _, err := os.Stat(c); err == nil {
				runc = c
				break
			}
		}
	}
	if runc == "" {
		p, err := exec.LookPath("runc")
		if err != nil {
			fmt.Fprintln(os.Stderr, "v6lab-runc: runc not found (set V6LAB_RUNC)")
			os.Exit(127)
		}
		runc = p
	}
	if err := adapt(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "v6lab-runc:", err)
		os.Exit(1)
	}
	if err := syscall.Exec(runc, append([]string{runc}, os.Args[1:]...), os.Environ()); err != nil {
		fmt.Fprintln(os.Stderr, "v6lab-runc: exec runc:", err)
		os.Exit(126)
	}
}

// adapt rewrites the file runc is about to read, if the command has one.
func adapt(args []string) error {
	cmd, rest := subcommand(args)
	var path string
	filter := hostcompat.FilterSpec
	switch cmd {
	case "create", "run":
		bundle := flagValue(rest, "--bundle", "-b")
		if bundle == "" {
			bundle = "."
		}
		path = filepath.Join(bundle, "config.json")
	case "exec":
		path = flagValue(rest, "--process", "-p")
		filter = hostcompat.FilterProcess
	}
	if path == "" {
		return nil
	}
	lim, err := limits()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, changes, err := filter(data, lim)
	if err != nil || len(changes) == 0 {
		return err
	}
	return os.WriteFile(path, out, 0o600)
}

// subcommand finds runc's subcommand among its global flags.
func subcommand(args []string) (string, []string) {
	for i, a := range args {
		switch a {
		case "create", "run", "exec":
			return a, args[i+1:]
		}
	}
	return "", nil
}

func flagValue(args []string, names ...string) string {
	for i, a := range args {
		for _, n := range names {
			if a == n && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, n+"="); ok {
				return v
			}
		}
	}
	return ""
}

func limits() (hostcompat.Limits, error) {
	bnd, err := hostcompat.BoundingSet("/proc/self/status")
	if err != nil {
		return hostcompat.Limits{}, err
	}
	lim := hostcompat.Limits{Bounding: bnd, HardLimits: map[string]uint64{}}
	if b, err := os.ReadFile("/proc/self/oom_score_adj"); err == nil {
		lim.OOMScoreAdj, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	for name, res := range rlimits {
		var r syscall.Rlimit
		if err := syscall.Getrlimit(res, &r); err == nil {
			lim.HardLimits[name] = r.Max
		}
	}
	return lim, nil
}
