package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/render/clab"
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
