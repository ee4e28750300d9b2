package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/labs/xexec"
)

// Down removes a lab completely, from whatever state it is in: containerlab's destroy
// when the topology is there, then a sweep by label and name of everything a lab can
// leave (containers, the management network, netns links, the run directory). It
// verifies that nothing is left.
//
// Down touches only what is the lab's: the name must pass the spec's name rule (so an
// empty name, or one that climbs out of the state directory, is refused before anything
// is removed), containers are found by the lab's label, and netns links are removed
// only for the lab's own container names.
func Down(ctx context.Context, name string, o Options) error {
	o.defaults()
	dir, err := labDir(o, name)
	if err != nil {
		return err
	}
	unlock, err := Lock(o, name, "down")
	if err != nil {
		return err
	}
	defer unlock()
	pr := NewProgress(o.Out)
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
		own := ownNames(ctx, name, dir)
		if err := sweep(ctx, name, own); err != nil {
			return strings.Join(notes, "; "), err
		}
		if err := os.RemoveAll(dir); err != nil {
			return "", err
		}
		if left := leftovers(ctx, name, own); len(left) > 0 {
			return "", fmt.Errorf("still present after down: %s", strings.Join(left, ", "))
		}
		return strings.Join(append(notes, "nothing left"), "; "), nil
	})
}

// CheckLabName refuses a name down, status or a lock must not act on.
func CheckLabName(name string) error {
	if err := spec.CheckName(name); err != nil {
		return fmt.Errorf("lab name: %w", err)
	}
	return nil
}

// labDir is the lab's run directory, refused unless it lies directly under the state
// directory's labs/.
func labDir(o Options, name string) (string, error) {
	if err := CheckLabName(name); err != nil {
		return "", err
	}
	root := filepath.Join(o.StateDir, "labs")
	dir := o.LabDir(name)
	if rel, err := filepath.Rel(root, dir); err != nil || rel != name {
		return "", fmt.Errorf("lab %q: its directory %s is not directly under %s", name, dir, root)
	}
	return dir, nil
}

// DownAll removes every v6lab lab on this host: those with containers carrying v6lab's
// lab label and those with only a run directory left (one holding the spec v6lab
// wrote). Names that fail the lab name rule are left alone, and said so.
func DownAll(ctx context.Context, o Options) error {
	o.defaults()
	names, err := allLabs(ctx, o)
	if err != nil {
		return err
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

// allLabs are the labs DownAll removes: names of containers with v6lab's lab label and
// of run directories holding v6lab's spec.yaml, each passing the lab name rule (the
// others are named on o.Out and left alone).
func allLabs(ctx context.Context, o Options) ([]string, error) {
	found, err := labNames(ctx)
	if err != nil {
		return nil, err
	}
	entries, _ := os.ReadDir(filepath.Join(o.StateDir, "labs"))
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(o.StateDir, "labs", e.Name(), "spec.yaml")); e.IsDir() && err == nil && !contains(found, e.Name()) {
			found = append(found, e.Name())
		}
	}
	var names []string
	for _, n := range found {
		if err := CheckLabName(n); err != nil {
			fmt.Fprintf(o.Out, "skipping %q: %v\n", n, err)
			continue
		}
		names = append(names, n)
	}
	return names, nil
}

// ownNames are the container names that are this lab's: those of the containers that
// carry its label, and those its run directory's plan names (a lab whose containers
// are gone). netns links are matched against them, never by a name pattern alone: lab
// "a" and lab "a-b" share the prefix v6lab-a-.
func ownNames(ctx context.Context, name, dir string) map[string]bool {
	own := map[string]bool{}
	if cs, err := containers(ctx, name); err == nil {
		for _, c := range cs {
			own[c.Name] = true
		}
	}
	if data, err := os.ReadFile(filepath.Join(dir, "plan.json")); err == nil {
		var p struct {
			Prefix  string `json:"containerPrefix"`
			Routers []struct {
				Name string `json:"name"`
			} `json:"routers"`
			Nodes []struct {
				Name string `json:"name"`
			} `json:"nodes"`
			Hosts []struct {
				Name string `json:"name"`
			} `json:"hosts"`
		}
		if json.Unmarshal(data, &p) == nil && p.Prefix == "v6lab-"+name+"-" {
			for _, group := range [][]struct {
				Name string `json:"name"`
			}{p.Routers, p.Nodes, p.Hosts} {
				for _, m := range group {
					own[p.Prefix+m.Name] = true
				}
			}
		}
	}
	return own
}

// netnsDir is where containerlab links each container's network namespace.
var netnsDir = "/var/run/netns"

// labNetnsLinks are the netns links (containerlab's, by container name) of the lab's
// own containers.
func labNetnsLinks(name string, own map[string]bool) []string {
	links, _ := filepath.Glob(filepath.Join(netnsDir, "v6lab-"+name+"-*"))
	var out []string
	for _, l := range links {
		if own[filepath.Base(l)] {
			out = append(out, l)
		}
	}
	return out
}

func sweep(ctx context.Context, name string, own map[string]bool) error {
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
		if err := removeNetwork(ctx, network, own); err != nil {
			return err
		}
		if err := removeFirewallRules(ctx, bridgeName(id)); err != nil {
			return err
		}
	}
	// containerlab links each container's netns under /var/run/netns by container name.
	for _, l := range labNetnsLinks(name, own) {
		if err := os.Remove(l); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}

// removeNetwork removes the lab's management network. Docker can still count an
// endpoint of a container it has just removed ("has active endpoints": seen in CI
// right after the lab's containers went); such endpoints, and those of the lab's own
// containers, are disconnected with force and the removal retried for up to 30 s. An
// endpoint of a container that is not the lab's is never touched: it is named in the
// error instead.
func removeNetwork(ctx context.Context, network string, own map[string]bool) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, time.Second, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := docker(ctx, 30*time.Second, "network", "rm", network)
		if err == nil {
			return true, nil
		}
		last = err
		if !strings.Contains(err.Error(), "active endpoints") {
			return false, err
		}
		eps, ierr := networkEndpoints(ctx, network)
		if ierr != nil {
			return false, nil
		}
		var foreign []string
		for _, ep := range eps {
			if !own[ep] && containerExists(ctx, ep) {
				foreign = append(foreign, ep)
				continue
			}
			_, _ = docker(ctx, 30*time.Second, "network", "disconnect", "--force", network, ep)
		}
		if len(foreign) > 0 {
			return false, fmt.Errorf("network %s: containers that are not this lab's are attached (%s); "+
				"disconnect them (docker network disconnect) and run down again", network, strings.Join(foreign, ", "))
		}
		return false, nil
	})
	if wait.Interrupted(err) && last != nil {
		return fmt.Errorf("%w (retried for 30 s)", last)
	}
	return err
}

// networkEndpoints are the names of the endpoints docker holds on a network.
func networkEndpoints(ctx context.Context, network string) ([]string, error) {
	out, err := docker(ctx, 10*time.Second, "network", "inspect", "--format", "{{json .Containers}}", network)
	if err != nil {
		return nil, err
	}
	var eps map[string]struct {
		Name string `json:"Name"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &eps); err != nil {
		return nil, err
	}
	var names []string
	for _, ep := range eps {
		if ep.Name != "" {
			names = append(names, ep.Name)
		}
	}
	return names, nil
}

// containerExists says whether docker knows a container by that name.
func containerExists(ctx context.Context, name string) bool {
	_, err := docker(ctx, 10*time.Second, "container", "inspect", "--format", "{{.Id}}", name)
	return err == nil
}

// leftovers lists what a lab still holds on the host.
func leftovers(ctx context.Context, name string, own map[string]bool) []string {
	var left []string
	if cs, err := containers(ctx, name); err == nil {
		for _, c := range cs {
			left = append(left, "container "+c.Name)
		}
	}
	if _, err := docker(ctx, 10*time.Second, "network", "inspect", "v6lab-"+name); err == nil {
		left = append(left, "network v6lab-"+name)
	}
	for _, l := range labNetnsLinks(name, own) {
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

// planContainers are the container names of every member of a plan.
func planContainers(p *plan.Plan) map[string]bool {
	own := map[string]bool{}
	for _, m := range Members(p, false) {
		own[p.ContainerName(m)] = true
	}
	return own
}
