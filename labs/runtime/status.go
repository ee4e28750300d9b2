package runtime

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"v6lab.dev/v6lab/labs/frr"

	"v6lab.dev/v6lab/labs/plan"
)

// Status is what a running lab looks like: its members with their addresses, every BGP
// session of every router, and the prefixes each router learned by BGP.
type Status struct {
	Lab      string        `json:"lab"`
	Members  []Member      `json:"members"`
	Sessions []frr.Session `json:"sessions"`
	Routes   []frr.Route   `json:"routes"`
	Nodes    []NodeState   `json:"kubernetesNodes,omitempty"`
	Errors   []string      `json:"errors,omitempty"`
	Plan     *plan.Plan    `json:"-"`
	Taken    time.Time     `json:"taken"`
}

// Router is a lab router as labs/frr reaches it.
func Router(p *plan.Plan, name string) frr.Router {
	return frr.Router{Name: name, Container: p.ContainerName(name)}
}

// Member is one lab member with its planned data-plane addresses.
type Member struct {
	Container
	Addresses []string `json:"addresses"`
}

// GetStatus reads a lab's state from Docker, from each router's vtysh JSON and, when
// kubeconfig names an existing file, from the Kubernetes API.
func GetStatus(ctx context.Context, p *plan.Plan, kubeconfig ...string) (*Status, error) {
	st := &Status{Lab: p.Lab, Plan: p, Taken: time.Now().UTC()}
	cs, err := containers(ctx, p.Lab)
	if err != nil {
		return nil, err
	}
	addrs := plannedAddresses(p)
	running := map[string]bool{}
	for _, c := range cs {
		short := strings.TrimPrefix(c.Name, p.ContainerPfx)
		st.Members = append(st.Members, Member{Container: c, Addresses: addrs[short]})
		running[short] = c.State == "running"
	}
	for _, r := range p.Routers {
		if !running[r.Name] {
			continue
		}
		fr := Router(p, r.Name)
		if ss, err := fr.Sessions(ctx); err != nil {
			st.Errors = append(st.Errors, err.Error())
		} else {
			st.Sessions = append(st.Sessions, ss...)
		}
		if rs, err := fr.Routes(ctx); err != nil {
			st.Errors = append(st.Errors, err.Error())
		} else {
			st.Routes = append(st.Routes, rs...)
		}
	}
	if len(kubeconfig) > 0 {
		if _, err := os.Stat(kubeconfig[0]); err == nil {
			if c, err := Client(kubeconfig[0]); err != nil {
				st.Errors = append(st.Errors, err.Error())
			} else if states, err := nodeStates(ctx, c); err != nil {
				st.Errors = append(st.Errors, "kubernetes: "+err.Error())
			} else {
				for _, n := range p.KubeNodes {
					if s, ok := states[n.Name]; ok {
						st.Nodes = append(st.Nodes, s)
					}
				}
			}
		}
	}
	return st, nil
}

func plannedAddresses(p *plan.Plan) map[string][]string {
	out := map[string][]string{}
	for _, r := range p.Routers {
		out[r.Name] = append(out[r.Name], r.Loopback.String()+" (lo)")
		for _, i := range r.Interfaces {
			if i.Address.IsValid() {
				out[r.Name] = append(out[r.Name], i.Address.String()+" ("+i.Name+")")
			}
		}
	}
	for _, n := range p.KubeNodes {
		out[n.Name] = []string{n.Address.String() + " (node-ip)", n.SpeakerAddress.String() + " (speaker)"}
	}
	for _, h := range p.Hosts {
		out[h.Name] = []string{h.Address.String()}
	}
	if seg := p.Segment; seg != nil {
		out[seg.Switch] = []string{"bridge of " + seg.Subnet.String() + " (no address)"}
		for _, port := range seg.Ports {
			out[port.Node] = append(out[port.Node], fmt.Sprintf("%s (%s, segment)", port.Address, port.Iface))
		}
	}
	return out
}

// Write prints the status for people.
func (st *Status) Write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "lab %s\n\nMEMBER\tKIND\tROLE\tSTATE\tADDRESSES\n", st.Lab)
	for _, m := range st.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Name, m.Member, m.Role, m.State, strings.Join(m.Addresses, ", "))
	}
	fmt.Fprintf(tw, "\nROUTER\tPEER\tREMOTE AS\tSTATE\tUP\tRCVD\tSENT\n")
	for _, s := range st.Sessions {
		peer := s.Peer
		if s.Hostname != "" {
			peer += " (" + s.Hostname + ")"
		}
		up := "-"
		if s.Established() {
			up = (time.Duration(s.UptimeMs) * time.Millisecond).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%d\n", s.Router, peer, s.RemoteAS, s.State, up, s.Received, s.Sent)
	}
	fmt.Fprintf(tw, "\nROUTER\tLEARNED PREFIX\tPATHS\tAS PATH\tNEXT HOPS\n")
	for _, r := range st.Routes {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", r.Router, r.Prefix, r.Multi, r.ASPath, strings.Join(r.NextHops, ", "))
	}
	if len(st.Nodes) > 0 {
		fmt.Fprintf(tw, "\nKUBERNETES NODE\tINTERNAL IP\tREADY\n")
		for _, n := range st.Nodes {
			ready := "yes"
			if !n.Ready {
				ready = "no (" + n.Reason + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", n.Name, n.InternalIP, ready)
		}
	}
	for _, e := range st.Errors {
		fmt.Fprintf(tw, "\nerror: %s\n", e)
	}
	return tw.Flush()
}
