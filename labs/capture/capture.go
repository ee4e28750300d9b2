// Package capture records packets on any interface of any lab container: it enters the
// container's network namespace, opens an AF_PACKET socket there (gopacket's afpacket:
// no cgo, no tcpdump), attaches a kernel BPF filter, and writes pcapng files that open
// in Wireshark. Several captures run at once on one clock (kernel timestamps), each
// bounded by a duration and a packet count.
package capture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/afpacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"v6lab.dev/v6lab/labs/xexec"
)

// Spec is one capture point.
type Spec struct {
	// Name names the pcapng file (<Name>.pcapng); default <container>-<iface>.
	Name string
	// Container is the docker container whose netns to enter ("" = this process's).
	Container string
	Iface     string
	Filter    Filter
	// MaxPackets stops this capture after so many packets (0: no limit).
	MaxPackets int
}

func (s Spec) fileName() string {
	if s.Name != "" {
		return s.Name + ".pcapng"
	}
	c := s.Container
	if c == "" {
		c = "host"
	}
	return c + "-" + s.Iface + ".pcapng"
}

// Result is one finished capture.
type Result struct {
	Spec    Spec
	File    string
	Packets int
	Drops   uint
	First   time.Time
	Last    time.Time
	// Down is how many times the interface went down under the capture (a fault
	// that sets the captured link down): the socket stays bound and records again
	// once the link is up.
	Down int
	Err  error
}

// Session is a set of captures running together.
type Session struct {
	caps     []*running
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

type running struct {
	res    Result
	handle *afpacket.TPacket
	out    *os.File
	ng     *pcapgo.NgWriter
}

// Start opens every capture point (all of them, or none: on error the opened ones are
// closed), then captures until Stop, the duration, or every capture's packet limit.
// Files go into dir.
func Start(ctx context.Context, dir string, duration time.Duration, specs ...Spec) (*Session, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &Session{stop: make(chan struct{})}
	for _, sp := range specs {
		r, err := open(ctx, dir, sp)
		if err != nil {
			for _, c := range s.caps {
				c.handle.Close()
				c.out.Close()
			}
			return nil, err
		}
		s.caps = append(s.caps, r)
	}
	deadline := time.Now().Add(duration)
	for _, c := range s.caps {
		s.wg.Add(1)
		go func(c *running) {
			defer s.wg.Done()
			c.loop(s.stop, deadline)
		}(c)
	}
	go func() {
		select {
		case <-ctx.Done():
			s.halt()
		case <-s.stop:
		}
	}()
	return s, nil
}

func (s *Session) halt() { s.stopOnce.Do(func() { close(s.stop) }) }

// Stop ends every capture now and returns the results.
func (s *Session) Stop() []Result {
	s.halt()
	return s.Wait()
}

// Wait waits for the captures to end by themselves (duration or packet limits).
func (s *Session) Wait() []Result {
	s.wg.Wait()
	s.halt()
	out := make([]Result, len(s.caps))
	for i, c := range s.caps {
		out[i] = c.res
	}
	return out
}

// RequireTraffic is the sanity half of every "must not appear" check: a capture that
// saw nothing proves nothing, so it is an error.
func RequireTraffic(results []Result) error {
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("capture %s: %w", r.File, r.Err))
		} else if r.Packets == 0 {
			errs = append(errs, fmt.Errorf("capture %s saw no packet: it proves nothing", r.File))
		}
	}
	return errors.Join(errs...)
}

// frame is one frame read, on its way to the file.
type frame struct {
	ci   gopacket.CaptureInfo
	data []byte
}

// loop reads the socket's ring until stop (then what the kernel had already handed
// over, up to the moment of stop), the deadline or the packet limit. The file is written
// by a goroutine of its own: a write held up by the disk (a host busy writing) never
// holds up the reading, which must keep up with the kernel or lose frames.
func (c *running) loop(stop <-chan struct{}, deadline time.Time) {
	defer c.handle.Close()
	defer c.out.Close()
	frames := make(chan frame, 1<<14)
	wrote := make(chan error, 1)
	go func() {
		var err error
		for f := range frames {
			if err == nil {
				err = c.ng.WritePacket(f.ci, f.data)
			}
		}
		if err == nil {
			err = c.ng.Flush()
		}
		wrote <- err
	}()
	defer func() {
		close(frames)
		if err := <-wrote; err != nil && c.res.Err == nil {
			c.res.Err = err
		}
		// The kernel counts the frames it had no room for in the version's own
		// statistics: TPACKET_V3's (what NewTPacket picks where the kernel has it)
		// are the second.
		if st, st3, err := c.handle.SocketStats(); err == nil {
			c.res.Drops = st.Drops() + st3.Drops()
		} else if c.res.Err == nil {
			c.res.Err = fmt.Errorf("reading the socket's drop count: %w", err)
		}
	}()
	// stopped: when Stop came or the deadline passed; frames up to it are still read.
	// settled: from then on, a read that finds nothing ends the loop. Stop's caller
	// waited for the traffic's last frames to be handed over; at the deadline, the
	// block open then is handed over within the block timeout.
	var stopped, settled time.Time
	for {
		if stopped.IsZero() {
			select {
			case <-stop:
				stopped = time.Now()
				settled = stopped
			default:
				if now := time.Now(); now.After(deadline) {
					stopped, settled = deadline, now.Add(ring.blockTimeout)
				}
			}
		}
		if !stopped.IsZero() && time.Since(settled) > time.Second {
			return
		}
		data, ci, err := c.handle.ReadPacketData()
		if errors.Is(err, afpacket.ErrTimeout) {
			if !stopped.IsZero() && time.Now().After(settled) {
				return // nothing more handed over
			}
			continue
		}
		if errors.Is(err, afpacket.ErrPoll) {
			// The interface went down (the kernel set ENETDOWN on the socket, and
			// poll reports it until it is read): clear it and go on; the kernel
			// hooks the socket in again when the interface comes up.
			if cerr := clearSocketError(c.handle); cerr != nil {
				c.res.Err = fmt.Errorf("%w (clearing the socket's error: %v)", err, cerr)
				return
			}
			c.res.Down++
			continue
		}
		if err != nil {
			c.res.Err = err
			return
		}
		if ci.Timestamp.After(deadline) || (!stopped.IsZero() && ci.Timestamp.After(stopped)) {
			return
		}
		ci.InterfaceIndex = 0
		frames <- frame{ci: ci, data: data}
		if c.res.Packets == 0 {
			c.res.First = ci.Timestamp
		}
		c.res.Last = ci.Timestamp
		c.res.Packets++
		if c.res.Spec.MaxPackets > 0 && c.res.Packets >= c.res.Spec.MaxPackets {
			return
		}
	}
}

// clearSocketError reads, and so clears, the capture socket's pending error.
// gopacket's TPacket keeps its descriptor unexported: reflection reads it (the pinned
// version's field "fd"; TestCaptureSurvivesLinkDown fails if it is gone).
func clearSocketError(h *afpacket.TPacket) error {
	v := reflect.ValueOf(h).Elem().FieldByName("fd")
	if !v.IsValid() || v.Kind() != reflect.Int {
		return errors.New("afpacket.TPacket has no descriptor field fd")
	}
	_, err := unix.GetsockoptInt(int(v.Int()), unix.SOL_SOCKET, unix.SO_ERROR)
	return err
}

// ring is each capture socket's ring (TPACKET_V3): blocks the kernel fills and hands
// over when full or after blockTimeout. Many small blocks rather than a few large ones:
// a reader held up (2 cores shared with a lab's agents, dozens of captures at once)
// loses nothing while the ring has blocks left, and at a light rate each block carries
// blockTimeout of traffic: 64 of 100 ms hold 6.4 s of it. 8 MiB a socket. (8 blocks of
// 1 MiB, 10 ms, held 80 ms: a concurrent run lost frames so, uncounted until the drops
// were read from the V3 statistics; 64 blocks of 10 ms still lost 425 frames in one,
// and up to 1384 on each link under the rollout of every agent.) Capture waits 200 ms
// past its traffic before it stops: every block it filled has been handed over.
var ring = struct {
	blocks, blockSize int
	blockTimeout      time.Duration
}{blocks: 64, blockSize: 128 << 10, blockTimeout: 100 * time.Millisecond}

func open(ctx context.Context, dir string, sp Spec) (*running, error) {
	prog, err := sp.Filter.Program()
	if err != nil {
		return nil, err
	}
	var handle *afpacket.TPacket
	newHandle := func() error {
		h, err := afpacket.NewTPacket(afpacket.OptInterface(sp.Iface),
			afpacket.OptFrameSize(1<<16), afpacket.OptBlockSize(ring.blockSize), afpacket.OptNumBlocks(ring.blocks),
			afpacket.OptBlockTimeout(ring.blockTimeout), afpacket.OptPollTimeout(50*time.Millisecond))
		if err != nil {
			return fmt.Errorf("capture on %s: %w", sp.Iface, err)
		}
		handle = h
		return nil
	}
	if sp.Container == "" {
		err = newHandle()
	} else {
		var pid int
		if pid, err = containerPid(ctx, sp.Container); err == nil {
			err = inNetns(pid, newHandle)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s:%s: %w", sp.Container, sp.Iface, err)
	}
	if prog != nil {
		if err := handle.SetBPF(prog); err != nil {
			handle.Close()
			return nil, fmt.Errorf("%s:%s: attaching the filter: %w", sp.Container, sp.Iface, err)
		}
	}
	path := filepath.Join(dir, sp.fileName())
	f, err := os.Create(path)
	if err != nil {
		handle.Close()
		return nil, err
	}
	name := sp.Iface
	if sp.Container != "" {
		name = sp.Container + ":" + sp.Iface
	}
	ng, err := pcapgo.NewNgWriterInterface(f, pcapgo.NgInterface{Name: name, LinkType: layers.LinkTypeEthernet,
		SnapLength: snapLen, TimestampResolution: 9, Description: describe(sp.Filter)},
		pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "v6lab", OS: goruntime.GOOS}})
	if err != nil {
		handle.Close()
		f.Close()
		return nil, err
	}
	return &running{res: Result{Spec: sp, File: path}, handle: handle, out: f, ng: ng}, nil
}

func describe(f Filter) string {
	switch {
	case f.Proto != "" && f.Port != 0:
		return fmt.Sprintf("ip6 and %s port %d", f.Proto, f.Port)
	case f.Proto != "":
		return "ip6 and " + f.Proto
	case f.IPv6Only:
		return "ip6"
	}
	return "all frames"
}

// containerPid returns the pid of a running container's first process.
func containerPid(ctx context.Context, container string) (int, error) {
	out, err := xexec.Run(ctx, xexec.Cmd{Name: "docker", Args: []string{"inspect", "--format", "{{.State.Pid}}", container},
		Timeout: 10 * time.Second})
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("container %s is not running", container)
	}
	return pid, nil
}

// inNetns runs fn on a thread that has entered pid's network namespace; sockets fn
// opens stay in that namespace after the thread returns to its own.
func inNetns(pid int, fn func() error) error {
	goruntime.LockOSThread()
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		goruntime.UnlockOSThread()
		return err
	}
	defer unix.Close(self)
	target, err := unix.Open(fmt.Sprintf("/proc/%d/ns/net", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		goruntime.UnlockOSThread()
		return err
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		goruntime.UnlockOSThread()
		return fmt.Errorf("entering the network namespace of pid %d: %w", pid, err)
	}
	ferr := fn()
	if err := unix.Setns(self, unix.CLONE_NEWNET); err != nil {
		// This thread cannot go back: leave it locked so the runtime retires it.
		return fmt.Errorf("leaving the network namespace of pid %d: %w", pid, err)
	}
	goruntime.UnlockOSThread()
	return ferr
}
