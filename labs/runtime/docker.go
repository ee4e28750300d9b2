package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"v6lab.dev/v6lab/labs/lab"
	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/render/clab"
	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/labs/xexec"
)

// Container is one lab container as Docker reports it.
type Container struct {
	Name   string `json:"name"`
	Member string `json:"member"` // router, host, node
	Role   string `json:"role"`
	State  string `json:"state"`
	Image  string `json:"image"`
}

func docker(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	out, err := xexec.Run(ctx, xexec.Cmd{Name: "docker", Args: args, Timeout: timeout})
	if err != nil && strings.Contains(err.Error(), "Cannot connect to the Docker daemon") {
		// Say what to do: a lab's containers outlive a stopped engine and can only be
		// listed and removed through it.
		return out, fmt.Errorf("the Docker engine is not running: start it (v6lab host setup) and run this again: %w", err)
	}
	return out, err
}

// containers lists the containers of one lab (lab == "" lists every v6lab lab's).
func containers(ctx context.Context, lab string) ([]Container, error) {
	filter := "label=" + clab.LabelLab
	if lab != "" {
		filter += "=" + lab
	}
	out, err := docker(ctx, 30*time.Second, "ps", "-a", "--filter", filter, "--format", "{{json .}}")
	if err != nil {
		return nil, err
	}
	var cs []Container
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var row struct {
			Names, State, Image, Labels string
		}
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			return nil, err
		}
		labels := map[string]string{}
		for _, kv := range strings.Split(row.Labels, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				labels[k] = v
			}
		}
		cs = append(cs, Container{Name: row.Names, State: row.State, Image: row.Image,
			Member: labels[clab.LabelKind], Role: labels[clab.LabelRole]})
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
	return cs, nil
}

// nameClashes refuses a lab whose container names another lab's containers already
// use (lab "a" with member "b-edge1" and lab "a-b" with member "edge1" both make
// v6lab-a-b-edge1: containerlab joins prefix, lab and member with "-").
func nameClashes(ctx context.Context, p *plan.Plan) error {
	out, err := docker(ctx, 30*time.Second, "ps", "-a", "--format", `{{.Names}}	{{.Label "`+clab.LabelLab+`"}}`)
	if err != nil {
		return err
	}
	own := planContainers(p)
	var clash []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		name, lab, _ := strings.Cut(line, "\t")
		if own[name] && lab != p.Lab {
			owner := "not a v6lab container"
			if lab != "" {
				owner = "lab " + lab
			}
			clash = append(clash, fmt.Sprintf("%s (%s)", name, owner))
		}
	}
	if len(clash) > 0 {
		sort.Strings(clash)
		return fmt.Errorf("lab %s: container names already taken: %s; rename the lab or the member", p.Lab, strings.Join(clash, ", "))
	}
	return nil
}

// labNames lists the labs that have containers on this host.
func labNames(ctx context.Context) ([]string, error) {
	out, err := docker(ctx, 30*time.Second, "ps", "-a", "--filter", "label="+clab.LabelLab,
		"--format", `{{.Label "`+clab.LabelLab+`"}}`)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var names []string
	for _, n := range strings.Fields(out) {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	return names, nil
}

// managementSubnets are the IPv6 subnets of the v6lab management networks on this
// host, by network name.
func managementSubnets(ctx context.Context) (map[string][]netip.Prefix, error) {
	out, err := docker(ctx, 30*time.Second, "network", "ls", "--filter", "name=v6lab-", "--format", "{{.Name}}")
	if err != nil {
		return nil, err
	}
	nets := map[string][]netip.Prefix{}
	for _, name := range strings.Fields(out) {
		sub, err := docker(ctx, 10*time.Second, "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", name)
		if err != nil {
			continue // gone meanwhile
		}
		for _, f := range strings.Fields(sub) {
			if p, err := netip.ParsePrefix(f); err == nil && p.Addr().Is6() {
				nets[name] = append(nets[name], p)
			}
		}
	}
	return nets, nil
}

// pickManagement keeps the lab off another running lab's management subnet: the
// subnet is derived from the name by a 16-bit hash, and names collide (lab944 and
// lab1280). A lab whose derived subnet is taken gets the first free alternative,
// recorded in its spec (spec.addressing.management) so that every later command
// plans the same one. It returns what it did ("" when nothing).
func pickManagement(ctx context.Context, l *lab.Lab) (string, error) {
	if l.Spec.Spec.Addressing.Management != "" {
		return "", nil // pinned, or picked by an earlier up
	}
	nets, err := managementSubnets(ctx)
	if err != nil {
		return "", err
	}
	taken := map[netip.Prefix]string{}
	for name, subs := range nets {
		if name == l.Plan.Management.Network {
			continue
		}
		for _, s := range subs {
			taken[s.Masked()] = name
		}
	}
	want := l.Plan.Management.IPv6Subnet
	owner, clash := taken[want]
	if !clash {
		return "", nil
	}
	for attempt := 1; attempt <= 64; attempt++ {
		alt := plan.ManagementSubnet(l.Plan.Lab, attempt)
		if _, used := taken[alt]; used {
			continue
		}
		nl, err := l.Variant("with management subnet "+alt.String(), func(s *spec.Lab) { s.Spec.Addressing.Management = alt.String() })
		if err != nil {
			return "", err
		}
		*l = *nl
		return fmt.Sprintf("management subnet %s is %s's: using %s", want, owner, alt), nil
	}
	return "", fmt.Errorf("no free management subnet for lab %s (64 tried)", l.Plan.Lab)
}
