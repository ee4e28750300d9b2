// Command v6lab-clab deploys a containerlab topology through containerlab's own Go
// packages (topology, nodes, links, runtime), in the order `containerlab deploy` uses,
// on hosts where the stock command cannot run: containerlab v0.69.3's Deploy reads
// /proc/modules unconditionally, and kernels built without module support have none.
// v6lab uses it only when labs/hostcompat detects such a host; everywhere else the stock
// `containerlab deploy` runs the very same topology file. Containerlab's code is used
// as published, never modified. Removal needs no such path: `containerlab destroy` works.
//
// What it leaves out of the stock deploy, on purpose: the kernel-module step, and the
// host-side conveniences (/etc/hosts entries, SSH config, Ansible/Nornir inventories).
// It writes topology-data.json, so `containerlab inspect` works on the result.
//
// Usage: v6lab-clab deploy -t TOPOLOGY.clab.yml [--node-filter a,b] [--timeout 5m]
// Exit status 1 when any node, link or exec fails; the error names it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"time"

	"github.com/srl-labs/containerlab/cert"
	"github.com/srl-labs/containerlab/core"
	"github.com/srl-labs/containerlab/exec"
	"github.com/srl-labs/containerlab/links"
	"github.com/srl-labs/containerlab/nodes"
	"github.com/srl-labs/containerlab/runtime"
	_ "github.com/srl-labs/containerlab/runtime/all"
	"github.com/srl-labs/containerlab/utils"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "deploy" {
		fmt.Fprintln(os.Stderr, "usage: v6lab-clab deploy -t TOPOLOGY.clab.yml [--timeout 5m]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("deploy", flag.ExitOnError)
	topo := fs.String("t", "", "topology file")
	timeout := fs.Duration("timeout", 5*time.Minute, "overall deadline")
	filter := fs.String("node-filter", "", "comma-separated nodes to deploy (as containerlab's --node-filter)")
	_ = fs.Parse(os.Args[2:])
	if *topo == "" {
		fmt.Fprintln(os.Stderr, "v6lab-clab: -t is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var nodeFilter []string
	if *filter != "" {
		nodeFilter = strings.Split(*filter, ",")
	}
	if err := deploy(ctx, *topo, nodeFilter, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "v6lab-clab:", err)
		os.Exit(1)
	}
}

func deploy(ctx context.Context, topo string, nodeFilter []string, timeout time.Duration) error {
	c, err := core.NewContainerLab(
		core.WithTimeout(timeout),
		core.WithTopoPath(topo, ""),
		core.WithNodeFilter(nodeFilter),
		core.WithRuntime("docker", &runtime.RuntimeConfig{Timeout: timeout}),
	)
	if err != nil {
		return fmt.Errorf("loading topology: %w", err)
	}
	if err := c.ResolveLinks(); err != nil {
		return fmt.Errorf("resolving links: %w", err)
	}
	if err := c.CreateNetwork(ctx); err != nil {
		return fmt.Errorf("management network: %w", err)
	}
	if err := links.SetMgmtNetUnderlyingBridge(c.Config.Mgmt.Bridge); err != nil {
		return err
	}
	utils.CreateDirectory(c.TopoPaths.TopologyLabDir(), 0o755)

	// The lab CA, as the stock deploy sets it up (kinds that issue certificates use it).
	c.Cert.CertStorage = cert.NewLocalDirCertStorage(c.TopoPaths)
	c.Cert.CA = cert.NewCA()
	if err := c.LoadOrGenerateCA(&cert.CACSRInput{
		CommonName: c.Config.Name + " lab CA", Country: "US", Organization: "containerlab",
		Expiry: time.Until(time.Now().AddDate(1, 0, 0)), KeySize: 2048,
	}); err != nil {
		return fmt.Errorf("lab CA: %w", err)
	}

	names := make([]string, 0, len(c.Nodes))
	for n := range c.Nodes {
		names = append(names, n)
	}
	sort.Strings(names)

	// 1. Create and start every container.
	for _, name := range names {
		n := c.Nodes[name]
		if err := n.PreDeploy(ctx, &nodes.PreDeployParams{Cert: c.Cert, TopologyName: c.Config.Name, TopoPaths: c.TopoPaths}); err != nil {
			return fmt.Errorf("node %s: pre-deploy: %w", name, err)
		}
		if err := n.Deploy(ctx, &nodes.DeployParams{Nodes: c.Nodes}); err != nil {
			return fmt.Errorf("node %s: deploy: %w", name, err)
		}
		if err := n.UpdateConfigWithRuntimeInfo(ctx); err != nil {
			return fmt.Errorf("node %s: runtime info: %w", name, err)
		}
	}
	// 2. Wire the links: a veth is created when its second end deploys.
	for _, name := range names {
		if err := c.Nodes[name].DeployEndpoints(ctx); err != nil {
			return fmt.Errorf("node %s: links: %w", name, err)
		}
	}
	// 3. Post-deploy and the topology's exec commands.
	execs := exec.NewExecCollection()
	for _, name := range names {
		n := c.Nodes[name]
		if err := n.PostDeploy(ctx, &nodes.PostDeployParams{Nodes: c.Nodes}); err != nil {
			return fmt.Errorf("node %s: post-deploy: %w", name, err)
		}
		if err := n.RunExecFromConfig(ctx, execs); err != nil {
			return fmt.Errorf("node %s: exec: %w", name, err)
		}
	}
	if err := execFailures(execs); err != nil {
		return err
	}

	f, err := os.Create(c.TopoPaths.TopoExportFile())
	if err != nil {
		return err
	}
	defer f.Close()
	if err := c.GenerateExports(ctx, f, ""); err != nil {
		return fmt.Errorf("topology data: %w", err)
	}
	fmt.Printf("deployed lab %s: %d nodes, %d links\n", c.Config.Name, len(c.Nodes), len(c.Links))
	return nil
}

// execFailures turns every exec that returned non-zero into one error.
func execFailures(ec *exec.ExecCollection) error {
	dump, err := ec.Dump(exec.ExecFormatJSON)
	if err != nil {
		return err
	}
	var results map[string][]struct {
		Cmd    []string `json:"cmd"`
		RC     int      `json:"return-code"`
		Stdout string   `json:"stdout"`
		Stderr string   `json:"stderr"`
	}
	if err := json.Unmarshal([]byte(dump), &results); err != nil {
		return err
	}
	var errs []error
	for node, rs := range results {
		for _, r := range rs {
			if r.RC != 0 {
				errs = append(errs, fmt.Errorf("exec on %s: %q returned %d: %s", node,
					strings.Join(r.Cmd, " "), r.RC, strings.TrimSpace(r.Stderr+" "+r.Stdout)))
			}
		}
	}
	return errors.Join(errs...)
}
