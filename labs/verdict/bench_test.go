package verdict

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	probewire "v6lab.dev/v6lab/fixtures/probe/wire"
)

const benchPackets = 1_000_000

var (
	benchOnce sync.Once
	benchFile string
	benchErr  error
)

// benchPcap writes (once) a pcap of 1,000,000 probe packets at 1 ms with one 500 ms hole.
func benchPcap(b *testing.B) string {
	benchOnce.Do(func() {
		dir, err := os.MkdirTemp("", "v6lab-bench-")
		if err != nil {
			benchErr = err
			return
		}
		benchFile = filepath.Join(dir, "probes-1M.pcap")
		f, err := os.Create(benchFile)
		if err != nil {
			benchErr = err
			return
		}
		defer f.Close()
		w := bufio.NewWriterSize(f, 1<<20)
		frames := make([]Frame, 0, benchPackets)
		tmpl := UDPFrame(client, world, 40000, 9000, probewire.AppendRequest(nil, 0, t0))
		for i := 0; i < benchPackets+500; i++ {
			if i >= 400_000 && i < 400_500 {
				continue
			}
			at := t0.Add(time.Duration(i) * time.Millisecond)
			data := append([]byte(nil), tmpl...)
			copy(data[len(data)-20:], probewire.AppendRequest(nil, uint64(i), at))
			frames = append(frames, Frame{Time: at, Data: data})
		}
		benchErr = WritePcap(w, frames)
		if benchErr == nil {
			benchErr = w.Flush()
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchFile
}

// BenchmarkAnalyzeOutage1M reads, decodes and analyzes a 1M-packet pcap as `v6lab
// analyze outage` does (three passes over the file, no packet held: B/op stays flat
// whatever the file's size), and compares with tshark doing the same job on the same
// file in the same run: reading every frame and applying a display filter for the
// stream, with no text output (-q).
func BenchmarkAnalyzeOutage1M(b *testing.B) {
	file := benchPcap(b)
	b.ReportAllocs()
	b.ResetTimer()
	var ours time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		v, err := OutageOf(Files(file), Match{Proto: "udp", DstPort: 9000}, OutageOptions{MaxLost: -1})
		if err != nil {
			b.Fatal(err)
		}
		ours += time.Since(start)
		if len(v.Windows) != 1 || v.Packets != benchPackets {
			b.Fatalf("unexpected verdict: %d packets, %d windows", v.Packets, len(v.Windows))
		}
	}
	b.StopTimer()
	perRun := ours / time.Duration(b.N)
	b.ReportMetric(float64(benchPackets)/perRun.Seconds(), "pkts/s")
	if tshark, err := exec.LookPath("tshark"); err == nil {
		start := time.Now()
		cmd := exec.Command(tshark, "-n", "-q", "-r", file, "-Y", "udp.dstport == 9000")
		cmd.Stdout, cmd.Stderr = nil, nil
		if err := cmd.Run(); err != nil {
			b.Fatalf("tshark: %v", err)
		}
		ts := time.Since(start)
		b.ReportMetric(float64(benchPackets)/ts.Seconds(), "tshark_pkts/s")
		b.ReportMetric(ts.Seconds()/perRun.Seconds(), "x_faster_than_tshark")
	} else {
		b.Log("tshark not installed: no comparison (apt-get install tshark)")
	}
}
