// Package hostcompat holds the adaptations some hosts need before v6lab's labs can run,
// and nothing else. Each adaptation is detected, explained and applied only where the
// host needs it; on a normal host Detect reports nothing and nothing is installed.
//
// Known adaptations:
//   - CapabilityFilter: the host's capability bounding set lacks capabilities that
//     privileged containers ask for (e.g. CAP_SYS_RESOURCE on some VMs), so runc fails
//     with "unable to apply caps". An OCI runtime wrapper (cmd/v6lab-runc) removes what
//     the host cannot grant and execs runc.
//   - NoKernelModules: the kernel has no module support (/proc/modules is missing), and
//     containerlab's deploy stops reading it. v6lab then deploys the same topology file
//     through its own sequence.
//   - PrivateCgroupns: the host runs cgroup v1 (or hybrid), where Docker's containers
//     share the host's cgroup namespace by default; a kubelet inside a node container
//     would then manage the host's cgroup tree, the same one as every other node's.
//     Docker's default becomes a private cgroup namespace, which cgroup v2 hosts have
//     already.
package hostcompat

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Need is one adaptation a host needs, with the reason it was detected.
type Need struct {
	Name   string
	Reason string
}

// Report is what Detect found.
type Report struct {
	MissingCaps []string
	// CapSource says whose capability bounding set was read: the Docker engine's,
	// which is what its containers can get, or (no engine running) this process's.
	CapSource string
	Needs     []Need
}

// Has reports whether the host needs the named adaptation.
func (r Report) Has(name string) bool {
	for _, n := range r.Needs {
		if n.Name == name {
			return true
		}
	}
	return false
}

// Adaptation names.
const (
	CapabilityFilter = "capability-filter"
	NoKernelModules  = "no-kernel-modules"
	PrivateCgroupns  = "private-cgroupns"
)

// Detect inspects the running host. The capabilities are the Docker engine's when it
// runs (its containers get at most its bounding set, which may differ from v6lab's
// own: a v6lab started from a restricted shell, or an engine started by systemd), else
// this process's.
func Detect() (Report, error) {
	status, source := "/proc/self/status", "this process (no Docker engine running)"
	if pid := dockerdPid(); pid > 0 {
		status, source = fmt.Sprintf("/proc/%d/status", pid), fmt.Sprintf("dockerd (pid %d)", pid)
	}
	return DetectFrom(status, source)
}

// dockerdPid finds the running Docker engine by its process name (0: none).
func dockerdPid() int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); err == nil && strings.TrimSpace(string(comm)) == "dockerd" {
			return pid
		}
	}
	return 0
}

// DetectFrom is Detect with the capability bounding set read from a /proc/<pid>/status
// file (source names it in the report).
func DetectFrom(statusPath, source string) (Report, error) {
	r := Report{CapSource: source}
	bnd, err := BoundingSet(statusPath)
	if err != nil {
		return r, err
	}
	last, err := lastCap("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return r, err
	}
	r.MissingCaps = Missing(bnd, last)
	if len(r.MissingCaps) > 0 {
		r.Needs = append(r.Needs, Need{CapabilityFilter, fmt.Sprintf(
			"the capability bounding set of %s lacks %s: privileged containers fail unless the OCI runtime drops them",
			source, strings.Join(r.MissingCaps, ", "))})
	}
	if _, err := os.Stat("/proc/modules"); os.IsNotExist(err) {
		r.Needs = append(r.Needs, Need{NoKernelModules,
			"/proc/modules does not exist (kernel without module support): containerlab's deploy cannot run as is"})
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); os.IsNotExist(err) {
		r.Needs = append(r.Needs, Need{PrivateCgroupns,
			"cgroup v1 (or hybrid): node containers need private cgroup namespaces so each kubelet manages only its own node"})
	}
	return r, nil
}

// BoundingSet reads CapBnd from a /proc/<pid>/status file.
func BoundingSet(statusPath string) (uint64, error) {
	data, err := os.ReadFile(statusPath)
	if err != nil {
		return 0, fmt.Errorf("hostcompat: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("hostcompat: no CapBnd in %s", statusPath)
}

func lastCap(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("hostcompat: %w", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

// Missing lists the capabilities up to last that the bounding set lacks.
func Missing(bnd uint64, last int) []string {
	var out []string
	for i := 0; i <= last && i < 64; i++ {
		if bnd&(1<<uint(i)) == 0 {
			out = append(out, CapName(i))
		}
	}
	return out
}
