package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"v6lab.dev/v6lab/labs/xexec"
)

// Down removes a lab completely, from whatever state it is in: containerlab's destroy
// when the topology is there, then a sweep by label and name of everything a lab can
// leave (containers, the management network, netns links, the run directory). It
// verifies that nothing is left.
func Down(ctx context.Context, name string, o Options) error {
	o.defaults()
	pr := NewProgress(o.Out)
	dir := o.LabDir(name)
	return pr.Step("down "+name, func() (string, error) {
		var notes []string
		topo := filepath.Join(dir, name+".clab.yml")
		if _, err := os.Stat(topo); err == nil {
			if d, err := newDeployer(o.BinDir); err != nil {
				notes = append(notes, "containerlab unavailable, sweeping: "+err.Error())
			} else if err := d.Destroy(ctx, topo); err != nil {
				notes = append(notes, "containerlab destroy failed, sweeping: "+firstLine(err.Error()))
			}
		}
		if err := sweep(ctx, name); err != nil {
			return strings.Join(notes, "; "), err
		}
		if err := os.RemoveAll(dir); err != nil {
			return "", err
		}
		if left := leftovers(ctx, name); len(left) > 0 {
			return "", fmt.Errorf("still present after down: %s", strings.Join(left, ", "))
		}
		return strings.Join(append(notes, "nothing left"), "; "), nil
	})
}

// DownAll removes every v6lab lab on this host: those with containers and those with
// only a run directory left.
func DownAll(ctx context.Context, o Options) error {
	o.defaults()
	names, err := labNames(ctx)
	if err != nil {
		return err
	}
	entries, _ := os.ReadDir(filepath.Join(o.StateDir, "labs"))
	for _, e := range entries {
		if e.IsDir() && !contains(names, e.Name()) {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		fmt.Fprintln(o.Out, "no v6lab lab on this host")
		return nil
	}
	var errs []error
	for _, n := range names {
		errs = append(errs, Down(ctx, n, o))
	}
	return errors.Join(errs...)
}

func sweep(ctx context.Context, name string) error {
	cs, err := containers(ctx, name)
	if err != nil {
		return err
	}
	for _, c := range cs {
		if _, err := docker(ctx, time.Minute, "rm", "-f", "-v", c.Name); err != nil {
			return err
		}
	}
	network := "v6lab-" + name
	if id, err := docker(ctx, 10*time.Second, "network", "inspect", "--format", "{{.Id}}", network); err == nil {
		if _, err := docker(ctx, 30*time.Second, "network", "rm", network); err != nil {
			return err
		}
		if err := removeFirewallRules(ctx, bridgeName(id)); err != nil {
			return err
		}
	}
	// containerlab links each container's netns under /var/run/netns by container name.
	links, _ := filepath.Glob(filepath.Join("/var/run/netns", "v6lab-"+name+"-*"))
	for _, l := range links {
		if err := os.Remove(l); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}

// leftovers lists what a lab still holds on the host.
func leftovers(ctx context.Context, name string) []string {
	var left []string
	if cs, err := containers(ctx, name); err == nil {
		for _, c := range cs {
			left = append(left, "container "+c.Name)
		}
	}
	if _, err := docker(ctx, 10*time.Second, "network", "inspect", "v6lab-"+name); err == nil {
		left = append(left, "network v6lab-"+name)
	}
	links, _ := filepath.Glob(filepath.Join("/var/run/netns", "v6lab-"+name+"-*"))
	for _, l := range links {
		left = append(left, "netns "+filepath.Base(l))
	}
	for _, r := range orphanFirewallRules(ctx) {
		left = append(left, "firewall rule "+r)
	}
	return left
}

// orphanFirewallRules are containerlab rules whose bridge no longer exists.
func orphanFirewallRules(ctx context.Context) []string {
	var out []string
	for _, r := range firewallRules(ctx, "") {
		f := strings.Fields(r)
		for i := 0; i+1 < len(f); i++ {
			if (f[i] == "-i" || f[i] == "-o") && strings.HasPrefix(f[i+1], "br-") {
				if _, err := os.Stat("/sys/class/net/" + f[i+1]); os.IsNotExist(err) {
					out = append(out, r)
				}
			}
		}
	}
	return out
}

// bridgeName is the Linux bridge docker creates for a user-defined network.
func bridgeName(networkID string) string {
	id := strings.TrimSpace(networkID)
	if len(id) > 12 {
		id = id[:12]
	}
	return "br-" + id
}

// clabComment marks the DOCKER-USER rules containerlab adds for a management bridge.
const clabComment = "set by containerlab"

// firewallRules lists containerlab's DOCKER-USER rules for a bridge ("" for every
// bridge), as iptables -S prints them.
func firewallRules(ctx context.Context, bridge string) []string {
	out, err := xexec.Run(ctx, xexec.Cmd{Name: "iptables", Args: []string{"-S", "DOCKER-USER"}, Timeout: 10 * time.Second})
	if err != nil {
		return nil // no iptables or no chain: nothing of ours
	}
	var rules []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "-A DOCKER-USER") && strings.Contains(l, clabComment) &&
			(bridge == "" || strings.Contains(l, "-i "+bridge+" ") || strings.Contains(l, "-o "+bridge+" ")) {
			rules = append(rules, l)
		}
	}
	return rules
}

// removeFirewallRules deletes them: containerlab's destroy does so too, but a lab whose
// run directory is gone is removed without it.
func removeFirewallRules(ctx context.Context, bridge string) error {
	for _, rule := range firewallRules(ctx, bridge) {
		args := strings.Fields(strings.Replace(rule, "-A ", "-D ", 1))
		// The comment is quoted in -S output; pass it as one argument.
		args = unquoteComment(args)
		if _, err := xexec.Run(ctx, xexec.Cmd{Name: "iptables", Args: args, Timeout: 10 * time.Second}); err != nil {
			return err
		}
	}
	return nil
}

func unquoteComment(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if strings.HasPrefix(args[i], `"`) {
			j := i
			for j < len(args) && !strings.HasSuffix(args[j], `"`) {
				j++
			}
			if j < len(args) {
				out = append(out, strings.Trim(strings.Join(args[i:j+1], " "), `"`))
				i = j
				continue
			}
		}
		out = append(out, args[i])
	}
	return out
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
