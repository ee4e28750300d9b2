package runtime

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"v6lab.dev/v6lab/labs/ciliumbuild"
	"v6lab.dev/v6lab/labs/human"
	"v6lab.dev/v6lab/labs/images"
)

// BuildCilium makes sure a Cilium release's programs, BPF sources, scripts and chart
// are built from its Go module (cached by content key) and linked into v6lab's bin
// directory, where the images and the Helm install find them. It says what it did:
// "" when the cache had the release. out receives a build's progress lines (nil:
// none; the lifecycle's spinner shows the elapsed time on a terminal).
func BuildCilium(ctx context.Context, binDir string, build images.CiliumBuild, out io.Writer) (string, error) {
	r, err := ciliumbuild.Parse(build.Version)
	if err != nil {
		return "", err
	}
	if binDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", err
		}
		binDir = filepath.Dir(exe)
	}
	b := ciliumbuild.Builder{CacheDir: CacheDir(), Out: out}
	res, err := b.Build(ctx, r)
	if err != nil {
		return "", err
	}
	if _, err := ciliumbuild.Link(binDir, res.Info); err != nil {
		return "", fmt.Errorf("linking Cilium %s into %s: %w", r, binDir, err)
	}
	if !res.Built {
		return "", nil
	}
	msg := fmt.Sprintf("built Cilium %s from its Go module in %s", r, human.Duration(res.Took()))
	for _, s := range res.Substitutes {
		msg += fmt.Sprintf(" (%s for %s)", s.Using, s.Wanted)
	}
	return msg, nil
}

// progressOut is where a long build inside a lifecycle step prints its progress
// lines: nowhere on a terminal (the step's spinner shows the time), the output
// elsewhere (CI logs).
func progressOut(w io.Writer) io.Writer {
	if w == nil || IsTerminal(w) {
		return nil
	}
	return w
}
