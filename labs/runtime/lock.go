package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrLabBusy marks a lab that another v6lab process is bringing up, testing or
// removing.
var ErrLabBusy = errors.New("lab in use")

// Lock takes the lab's lock for one operation (what: up, down, test) and returns what
// releases it. The lock is an flock(2) on <state>/locks/<lab>.lock — outside the lab's
// run directory, which down removes — so it dies with its process: a killed v6lab
// never leaves a lab locked. A lab already locked is refused at once, naming who holds
// it.
func Lock(o Options, lab, what string) (func(), error) {
	o.defaults()
	if err := CheckLabName(lab); err != nil {
		return nil, err
	}
	dir := filepath.Join(o.StateDir, "locks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, lab+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: lab %s: another v6lab holds it (%s); wait for it to finish, or stop it",
				ErrLabBusy, lab, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("locking lab %s: %w", lab, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d: %s\n", os.Getpid(), what)), 0)
	return func() {
		_ = f.Truncate(0)
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
