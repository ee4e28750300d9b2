package runtime

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"v6lab.dev/v6lab/labs/hostcompat"
	"v6lab.dev/v6lab/labs/xexec"
)

// Deployer puts a containerlab topology on the host and takes it off again.
type Deployer interface {
	Name() string
	Deploy(ctx context.Context, topo string, members []string) error
	Destroy(ctx context.Context, topo string) error
}

// clabEnv keeps containerlab from reaching out to the internet for its version check.
var clabEnv = []string{"CLAB_VERSION_CHECK=disable"}

// clabDeployer runs containerlab. deployBin is the stock CLI, or, on hosts without
// /proc/modules where `containerlab deploy` cannot run, tools/cmd/v6lab-clab, which
// deploys through containerlab's own Go packages. Removal always uses the stock CLI,
// which works on such hosts too.
type clabDeployer struct {
	name       string
	deployBin  string
	destroyBin string
}

func (d clabDeployer) Name() string { return d.name }

func (d clabDeployer) Deploy(ctx context.Context, topo string, members []string) error {
	_, err := xexec.Run(ctx, xexec.Cmd{Name: d.deployBin, Env: clabEnv, Timeout: 10 * time.Minute,
		Args: []string{"deploy", "-t", topo, "--node-filter", strings.Join(members, ",")}})
	return err
}

func (d clabDeployer) Destroy(ctx context.Context, topo string) error {
	_, err := xexec.Run(ctx, xexec.Cmd{Name: d.destroyBin, Env: clabEnv, Timeout: 5 * time.Minute,
		Args: []string{"destroy", "-t", topo, "--cleanup"}})
	return err
}

// findTool looks for a helper binary next to the running executable, then in PATH.
func findTool(binDir, name string) (string, error) {
	if binDir == "" {
		if exe, err := os.Executable(); err == nil {
			binDir = filepath.Dir(exe)
		}
	}
	if binDir != "" {
		p := filepath.Join(binDir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found next to v6lab or in PATH: run `make tools` (builds it from the pinned Go module)", name)
}

// newDeployer picks the stock CLI, or the library path where the host needs it.
func newDeployer(binDir string) (Deployer, error) {
	stockBin, err := findTool(binDir, "containerlab")
	if err != nil {
		return nil, err
	}
	d := clabDeployer{name: "containerlab", deployBin: stockBin, destroyBin: stockBin}
	rep, err := hostcompat.Detect()
	if err != nil {
		return nil, err
	}
	if rep.Has(hostcompat.NoKernelModules) {
		if d.deployBin, err = findTool(binDir, "v6lab-clab"); err != nil {
			return nil, err
		}
		d.name = "containerlab packages via v6lab-clab (host without kernel modules)"
	}
	return d, nil
}
