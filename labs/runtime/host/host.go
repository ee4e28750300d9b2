// Package host prepares this machine for v6lab labs: a running Docker engine and, only
// where labs/hostcompat detects the need, the capability-filtering OCI runtime. Setup is
// idempotent and reports every change it made.
package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"v6lab.dev/v6lab/labs/atomicfile"

	"v6lab.dev/v6lab/labs/hostcompat"
	"v6lab.dev/v6lab/labs/xexec"
)

// Paths used by the setup.
const (
	DaemonJSON     = "/etc/docker/daemon.json"
	WrapperPath    = "/usr/local/lib/v6lab/v6lab-runc"
	WrapperRuntime = "v6lab-runc"
	DockerdLog     = "/var/log/v6lab-dockerd.log"
)

// Result says what Setup found and changed.
type Result struct {
	Needs   []hostcompat.Need
	Changes []string
}

// Setup makes sure Docker runs, with the host adaptations this host needs.
// wrapperSrc is the built v6lab-runc binary (installed only if needed).
func Setup(ctx context.Context, wrapperSrc string, log *slog.Logger) (Result, error) {
	var res Result
	rep, err := hostcompat.Detect()
	if err != nil {
		return res, err
	}
	res.Needs = rep.Needs
	if _, err := exec.LookPath("dockerd"); err != nil {
		log.Info("installing Docker engine from the OS packages (docker.io)")
		if err := xexec.Simple(ctx, 15*time.Minute, "apt-get", "update", "-qq"); err != nil {
			return res, err
		}
		if err := xexec.Simple(ctx, 15*time.Minute, "apt-get", "install", "-y", "-qq", "docker.io"); err != nil {
			return res, err
		}
		res.Changes = append(res.Changes, "installed docker.io")
	}
	configChanged, restart := false, false
	if rep.Has(hostcompat.PrivateCgroupns) {
		changed, err := mergeDaemonJSON(DaemonJSON, map[string]any{"default-cgroupns-mode": "private"})
		if err != nil {
			return res, err
		}
		if changed {
			restart = true // not a reloadable setting
			res.Changes = append(res.Changes, "made private cgroup namespaces Docker's default in "+DaemonJSON)
		}
	}
	if rep.Has(hostcompat.CapabilityFilter) {
		changed, err := installWrapper(wrapperSrc)
		if err != nil {
			return res, err
		}
		if changed {
			res.Changes = append(res.Changes, "installed "+WrapperPath)
		}
		changed, err = registerRuntime(DaemonJSON)
		if err != nil {
			return res, err
		}
		if changed {
			configChanged = true
			res.Changes = append(res.Changes, fmt.Sprintf("registered %s as Docker's default runtime in %s", WrapperRuntime, DaemonJSON))
		}
	}
	if restart && dockerUp(ctx) {
		if err := stopDockerd(ctx); err != nil {
			return res, err
		}
		res.Changes = append(res.Changes, "stopped dockerd to apply its new configuration")
	}
	if !dockerUp(ctx) {
		if err := startDockerd(ctx); err != nil {
			return res, err
		}
		res.Changes = append(res.Changes, "started dockerd (log: "+DockerdLog+")")
	} else if configChanged {
		// dockerd reloads runtimes and default-runtime on SIGHUP.
		if err := reloadDockerd(); err != nil {
			return res, err
		}
		res.Changes = append(res.Changes, "reloaded dockerd's configuration")
	}
	return res, nil
}

func installWrapper(src string) (bool, error) {
	want, err := os.ReadFile(src)
	if err != nil {
		return false, fmt.Errorf("host: the OCI runtime wrapper is needed on this host but %s is missing (make build): %w", src, err)
	}
	if have, err := os.ReadFile(WrapperPath); err == nil && string(have) == string(want) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(WrapperPath), 0o755); err != nil {
		return false, err
	}
	tmp := WrapperPath + ".new"
	if err := os.WriteFile(tmp, want, 0o755); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, WrapperPath)
}

// registerRuntime merges the wrapper into daemon.json, keeping every other setting.
func registerRuntime(path string) (bool, error) {
	return mergeDaemonJSON(path, map[string]any{
		"runtimes":        map[string]any{WrapperRuntime: map[string]any{"path": WrapperPath}},
		"default-runtime": WrapperRuntime,
	})
}

// mergeDaemonJSON sets keys in daemon.json (one level into objects), keeping every
// other setting; it reports whether the file changed.
func mergeDaemonJSON(path string, set map[string]any) (bool, error) {
	cfg := map[string]any{}
	if data, err := os.ReadFile(path); err == nil && len(data) > 0 {
		if err := json.Unmarshal(data, &cfg); err != nil {
			return false, fmt.Errorf("host: %s: %w", path, err)
		}
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	before, _ := json.Marshal(cfg)
	for k, v := range set {
		obj, isObj := v.(map[string]any)
		have, _ := cfg[k].(map[string]any)
		if isObj && have != nil {
			for kk, vv := range obj {
				have[kk] = vv
			}
			continue
		}
		cfg[k] = v
	}
	after, _ := json.Marshal(cfg)
	if string(before) == string(after) {
		return false, nil
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, err
	}
	if err := backup(path); err != nil {
		return false, err
	}
	return true, atomicfile.Write(path, append(out, '\n'), 0o644)
}

// Backup is where the first change to daemon.json keeps the file as it was (a file
// holding absentMarker when there was none): host undo puts it back.
func Backup(path string) string { return path + ".v6lab-orig" }

const absentMarker = "# v6lab: there was no daemon.json before v6lab host setup\n"

// backup keeps daemon.json as it was before v6lab first changed it (once: later
// changes keep the first backup).
func backup(path string) error {
	b := Backup(path)
	if _, err := os.Stat(b); err == nil {
		return nil
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		data = []byte(absentMarker)
	case err != nil:
		return err
	}
	return atomicfile.Write(b, data, 0o644)
}

// restoreDaemonJSON puts daemon.json back as it was before v6lab changed it; it
// reports whether it changed anything.
func restoreDaemonJSON(path string) (bool, error) {
	b := Backup(path)
	data, err := os.ReadFile(b)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // v6lab never changed it
	}
	if err != nil {
		return false, err
	}
	if string(data) == absentMarker {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, err
		}
	} else if err := atomicfile.Write(path, data, 0o644); err != nil {
		return false, err
	}
	return true, os.Remove(b)
}

// Undo takes back what Setup changed on the host: daemon.json as it was (the backup
// Setup kept), the OCI runtime wrapper removed, and dockerd restarted onto the old
// configuration — only when no container runs (stopping the engine would stop them:
// then nothing is changed and the error says so). Docker itself stays installed.
func Undo(ctx context.Context) (Result, error) {
	var res Result
	_, err := os.Stat(Backup(DaemonJSON))
	changedConfig := err == nil
	if changedConfig && dockerUp(ctx) {
		out, err := xexec.Run(ctx, xexec.Cmd{Name: "docker", Args: []string{"ps", "-q"}, Timeout: 10 * time.Second})
		if err != nil {
			return res, err
		}
		if strings.TrimSpace(out) != "" {
			return res, fmt.Errorf("host: undoing %s needs dockerd restarted, but containers are running; stop them (v6lab down --all) and run host undo again", DaemonJSON)
		}
	}
	restored, err := restoreDaemonJSON(DaemonJSON)
	if err != nil {
		return res, err
	}
	if restored {
		res.Changes = append(res.Changes, "restored "+DaemonJSON+" as it was before v6lab host setup")
	}
	if err := os.Remove(WrapperPath); err == nil {
		res.Changes = append(res.Changes, "removed "+WrapperPath)
	} else if !errors.Is(err, os.ErrNotExist) {
		return res, err
	}
	if restored && dockerUp(ctx) {
		if err := stopDockerd(ctx); err != nil {
			return res, err
		}
		if err := startDockerd(ctx); err != nil {
			return res, err
		}
		res.Changes = append(res.Changes, "restarted dockerd onto its old configuration")
	}
	return res, nil
}

func dockerUp(ctx context.Context) bool {
	return xexec.Simple(ctx, 10*time.Second, "docker", "info", "--format", "{{.ServerVersion}}") == nil
}

func startDockerd(ctx context.Context) error {
	logf, err := os.OpenFile(DockerdLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("dockerd")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("host: starting dockerd: %w", err)
	}
	_ = cmd.Process.Release()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if dockerUp(ctx) {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("host: dockerd did not come up within 60s; see %s", DockerdLog)
}

// stopDockerd stops the engine to apply a setting it cannot reload. It refuses while
// containers run: stopping the engine would stop them.
func stopDockerd(ctx context.Context) error {
	out, err := xexec.Run(ctx, xexec.Cmd{Name: "docker", Args: []string{"ps", "-q"}, Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) != "" {
		return fmt.Errorf("host: dockerd must restart to apply %s, but containers are running; stop them (v6lab down --all) and run host setup again", DaemonJSON)
	}
	pid, err := dockerdPid()
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return err
	}
	for i := 0; i < 100; i++ {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("host: dockerd (pid %d) did not stop", pid)
}

func dockerdPid() (int, error) {
	out, err := exec.Command("pidof", "dockerd").Output()
	if err != nil {
		return 0, fmt.Errorf("host: dockerd pid: %w", err)
	}
	var pid int
	if _, err := fmt.Sscanf(string(out), "%d", &pid); err != nil {
		return 0, fmt.Errorf("host: dockerd pid %q: %w", out, err)
	}
	return pid, nil
}

func reloadDockerd() error {
	pid, err := dockerdPid()
	if err != nil {
		return err
	}
	return syscall.Kill(pid, syscall.SIGHUP)
}
