// Command argo-client drives a running artifact driver plugin through Argo
// Workflows' own v4.0.5 plugin client (plugin.NewDriver), so Argo's client is
// the judge of wire compatibility. SaveStream / GetCapabilities (Argo v4.1)
// go through a raw gRPC client, see stream.go.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v4/pkg/apis/workflow/v1alpha1"
	"github.com/argoproj/argo-workflows/v4/util/logging"
	"github.com/argoproj/argo-workflows/v4/workflow/artifacts/plugin"
)

const mib = 1 << 20

var (
	passed, failed int
	baseCtx        context.Context // carries the logger NewDriver requires
)

// step runs one check; ctx() hands out a fresh 60 s context per driver call.
func step(name string, fn func(ctx func() context.Context) error) {
	var cancels []context.CancelFunc
	err := fn(func() context.Context {
		c, cancel := context.WithTimeout(baseCtx, 60*time.Second)
		cancels = append(cancels, cancel)
		return c
	})
	for _, c := range cancels {
		c()
	}
	if err != nil {
		failed++
		fmt.Printf("FAIL %s: %v\n", name, err)
		return
	}
	passed++
	fmt.Printf("PASS %s\n", name)
}

func finish() {
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	os.Exit(min(failed, 1))
}

// randBytes is deterministic per seed so failures are reproducible.
func randBytes(seed byte, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

func writeFile(path string, b []byte) error {
	return errors.Join(os.MkdirAll(filepath.Dir(path), 0o755), os.WriteFile(path, b, 0o644))
}

func sameBytes(want []byte, path string) error {
	got, err := os.ReadFile(path)
	if err == nil && !bytes.Equal(want, got) {
		err = fmt.Errorf("%s differs (want %d bytes, got %d)", path, len(want), len(got))
	}
	return err
}

// sameTree checks root holds exactly the files in want (slash-separated relative paths).
func sameTree(want map[string][]byte, root string) error {
	seen := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		w, ok := want[filepath.ToSlash(rel)]
		if !ok || !d.Type().IsRegular() {
			return fmt.Errorf("unexpected extra entry %s", rel)
		}
		seen++
		return sameBytes(w, p)
	})
	if err == nil && seen != len(want) {
		err = fmt.Errorf("found %d files, want %d", seen, len(want))
	}
	return err
}

func main() {
	socket := flag.String("socket", "", "unix socket path of the running plugin")
	configFile := flag.String("config-file", "", "file holding the plugin configuration YAML string")
	prefix := flag.String("prefix", "", "unique key prefix, e.g. run-123")
	workdir := flag.String("workdir", "", "scratch directory")
	bench := flag.String("bench", "", "load|save|open|savestream|caps, or builtin-load|builtin-save|builtin-open|builtin-savestream: time one transfer of -key through Argo's code instead of the conformance steps")
	benchKey := flag.String("key", "", "object key for -bench")
	benchFile := flag.String("file", "", "local file or directory for -bench load, save, savestream")
	var ref builtinRef
	flag.StringVar(&ref.endpoint, "endpoint", "", "host:port of the S3 server, for builtin-* modes (keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")
	flag.StringVar(&ref.bucket, "bucket", "", "bucket, for builtin-* modes")
	flag.Parse()
	if *bench != "" {
		os.Exit(runBench(*bench, *socket, *configFile, *benchKey, *benchFile, ref))
	}
	if *socket == "" || *configFile == "" || *prefix == "" || *workdir == "" {
		flag.Usage()
		os.Exit(2)
	}
	cfg, err := os.ReadFile(*configFile)
	if err = errors.Join(err, os.MkdirAll(*workdir, 0o755)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}

	// NewDriver panics without a logger in the context; logs go to stderr so
	// stdout carries only PASS/FAIL lines.
	baseCtx = logging.WithLogger(context.Background(), logging.NewSlogLogger(logging.Info, logging.Text))
	// NewDriver polls up to 120 s for the socket file to appear; cap that wait.
	dctx, dcancel := context.WithTimeout(baseCtx, 30*time.Second)
	drv, err := plugin.NewDriver(dctx, "s3", *socket, 5*time.Second)
	dcancel()
	raw, rawErr := dialRaw(*socket, 5*time.Second) // lazy: only fails on bad options
	if err = errors.Join(err, rawErr); err != nil {
		step("connect", func(func() context.Context) error { return err })
		finish()
	}

	art := func(name string) *wfv1.Artifact {
		return &wfv1.Artifact{Name: strings.ReplaceAll(name, "/", "-"),
			ArtifactLocation: wfv1.ArtifactLocation{Plugin: &wfv1.PluginArtifact{
				Name: "s3", Configuration: string(cfg), Key: *prefix + "/" + name}}}
	}
	wd := func(s string) string { return filepath.Join(*workdir, s) }

	fileData := randBytes(1, 5*mib+123)
	step("save-file", func(ctx func() context.Context) error {
		if err := writeFile(wd("src-file.bin"), fileData); err != nil {
			return err
		}
		return drv.Save(ctx(), wd("src-file.bin"), art("file.bin"))
	})

	// Argo's executor loads into "<path>.tmp" and renames afterwards.
	step("load-file", func(ctx func() context.Context) error {
		if err := drv.Load(ctx(), art("file.bin"), wd("loaded.bin.tmp")); err != nil {
			return err
		}
		return sameBytes(fileData, wd("loaded.bin.tmp"))
	})

	dirFiles := map[string][]byte{
		"a.txt":               []byte("hello from argo-client\n"),
		"empty.txt":           {},
		"nested/deeper/b.bin": randBytes(2, mib+7),
		"nested/c.txt":        []byte("nested text file\n"),
	}
	step("save-dir", func(ctx func() context.Context) error {
		_ = os.RemoveAll(wd("src-dir"))
		for rel, b := range dirFiles {
			if err := writeFile(filepath.Join(wd("src-dir"), filepath.FromSlash(rel)), b); err != nil {
				return err
			}
		}
		return drv.Save(ctx(), wd("src-dir"), art("dir"))
	})

	step("load-dir", func(ctx func() context.Context) error {
		_ = os.RemoveAll(wd("loaded-dir"))
		if err := drv.Load(ctx(), art("dir"), wd("loaded-dir")); err != nil {
			return err
		}
		return sameTree(dirFiles, wd("loaded-dir"))
	})

	step("list-objects", func(ctx func() context.Context) error {
		p := *prefix + "/dir/"
		want := []string{p + "a.txt", p + "empty.txt", p + "nested/c.txt", p + "nested/deeper/b.bin"}
		got, err := drv.ListObjects(ctx(), art("dir"))
		if slices.Sort(got); err != nil || !slices.Equal(want, got) {
			return fmt.Errorf("want %q, got %q (err=%v)", want, got, err)
		}
		return nil
	})

	step("is-directory", func(ctx func() context.Context) error {
		for name, want := range map[string]bool{"dir": true, "file.bin": false, "nope": false} {
			if got, err := drv.IsDirectory(ctx(), art(name)); err != nil || got != want {
				return fmt.Errorf("%s: want %v, got %v (err=%v)", name, want, got, err)
			}
		}
		return nil
	})

	// The v4.0.5 driver surfaces server errors through the reader, not OpenStream.
	step("open-stream", func(ctx func() context.Context) error {
		readAll := func(name string) ([]byte, error) {
			rc, err := drv.OpenStream(ctx(), art(name))
			if err != nil {
				return nil, err
			}
			defer rc.Close()
			return io.ReadAll(rc)
		}
		if got, err := readAll("file.bin"); err != nil || !bytes.Equal(fileData, got) {
			return fmt.Errorf("file.bin: got %d bytes (want %d), err=%v", len(got), len(fileData), err)
		}
		if got, err := readAll("missing.bin"); err == nil {
			return fmt.Errorf("reading missing key gave no error (%d bytes)", len(got))
		}
		return nil
	})

	streamData := randBytes(3, 9*mib+5)
	step("save-stream", func(ctx func() context.Context) error {
		if ok, err := getCapabilities(ctx(), raw); err != nil || !ok {
			return fmt.Errorf("GetCapabilities: supports_save_stream=%v err=%v", ok, err)
		}
		if frames, err := saveStream(ctx(), raw, art("streamed.bin"), bytes.NewReader(streamData)); err != nil || frames != 5 {
			return fmt.Errorf("SaveStream: %d chunk frames (want 5), err=%v", frames, err)
		}
		if err := drv.Load(ctx(), art("streamed.bin"), wd("streamed.bin.tmp")); err != nil {
			return fmt.Errorf("load back: %w", err)
		}
		return sameBytes(streamData, wd("streamed.bin.tmp"))
	})

	step("not-found", func(ctx func() context.Context) error {
		err := drv.Load(ctx(), art("missing.bin"), wd("missing.bin.tmp"))
		if err == nil || !strings.Contains(err.Error(), "missing.bin") {
			return fmt.Errorf("load of missing key: want error naming missing.bin, got %v", err)
		}
		if _, err := drv.ListObjects(ctx(), art("missing-dir")); err == nil {
			return errors.New("ListObjects of missing prefix succeeded")
		}
		return nil
	})

	step("delete", func(ctx func() context.Context) error {
		if err := drv.Delete(ctx(), art("file.bin")); err != nil {
			return fmt.Errorf("delete file.bin: %w", err)
		}
		if drv.Load(ctx(), art("file.bin"), wd("deleted.bin.tmp")) == nil {
			return errors.New("load after delete succeeded")
		}
		if err := drv.Delete(ctx(), art("dir/")); err != nil { // trailing slash: whole prefix
			return fmt.Errorf("delete dir/: %w", err)
		}
		if isDir, err := drv.IsDirectory(ctx(), art("dir")); err != nil || isDir {
			return fmt.Errorf("after deleting dir/: IsDirectory=%v err=%v", isDir, err)
		}
		if err := drv.Delete(ctx(), art("streamed.bin")); err != nil {
			return fmt.Errorf("delete streamed.bin: %w", err)
		}
		return nil
	})

	// Artifact GC deletes with the artifact's recorded key, which for an
	// `archive: none` directory has no trailing slash.
	step("gc-delete-dir", func(ctx func() context.Context) error {
		if err := drv.Save(ctx(), wd("src-dir"), art("gc-dir")); err != nil {
			return err
		}
		if err := drv.Delete(ctx(), art("gc-dir")); err != nil {
			return fmt.Errorf("delete gc-dir: %w", err)
		}
		if isDir, err := drv.IsDirectory(ctx(), art("gc-dir")); err != nil || isDir {
			return fmt.Errorf("after GC's delete of gc-dir: IsDirectory=%v err=%v", isDir, err)
		}
		return nil
	})

	_ = drv.Close()
	_ = raw.Close()
	finish()
}

// runBench moves one object (or directory) the way Argo's processes do and
// prints {"bytes":N,"seconds":S}: Load/Save/OpenStream through the v4.0.5
// plugin driver (as the executor and argo-server call it), SaveStream as the
// v4.1 executor streams an output. Modes starting "builtin-" run Argo's
// built-in S3 driver instead (builtin.go), the reference the plugin replaces.
func runBench(mode, socket, configFile, key, file string, ref builtinRef) int {
	ctx := logging.WithLogger(context.Background(), logging.NewSlogLogger(logging.Info, logging.Text))
	if strings.HasPrefix(mode, "builtin-") {
		return report(runBuiltin(ctx, strings.TrimPrefix(mode, "builtin-"), ref, key, file))
	}
	if mode == "caps" { // one GetCapabilities, as argo-server does when it starts
		raw, err := dialRaw(socket, 5*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer raw.Close()
		ok, err := getCapabilities(ctx, raw)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("{\"supportsSaveStream\":%v}\n", ok)
		return 0
	}
	cfg, err := os.ReadFile(configFile)
	if err != nil || socket == "" || key == "" {
		fmt.Fprintln(os.Stderr, "bench needs -socket, -config-file and -key", err)
		return 2
	}
	a := &wfv1.Artifact{Name: "bench", ArtifactLocation: wfv1.ArtifactLocation{Plugin: &wfv1.PluginArtifact{
		Name: "s3", Configuration: string(cfg), Key: key}}}
	return report(func() (int64, error) {
		switch mode {
		case "open", "load", "save":
			drv, err := plugin.NewDriver(ctx, "s3", socket, 5*time.Second)
			if err != nil {
				return 0, err
			}
			return transfer(ctx, drv, mode, a, file)
		case "savestream":
			raw, err := dialRaw(socket, 5*time.Second)
			if err != nil {
				return 0, err
			}
			defer raw.Close()
			if ok, err := getCapabilities(ctx, raw); err != nil || !ok {
				return 0, fmt.Errorf("GetCapabilities: %v %v", ok, err)
			}
			f, err := os.Open(file)
			if err != nil {
				return 0, err
			}
			defer f.Close()
			cr := &countingReader{r: f}
			_, err = saveStream(ctx, raw, a, cr)
			return cr.n, err
		}
		return 0, fmt.Errorf("unknown -bench mode %q", mode)
	})
}

// driver is what the plugin client and the built-in S3 driver both offer.
type driver interface {
	Load(ctx context.Context, a *wfv1.Artifact, path string) error
	Save(ctx context.Context, path string, a *wfv1.Artifact) error
	OpenStream(ctx context.Context, a *wfv1.Artifact) (io.ReadCloser, error)
}

// transfer runs one Load, Save or OpenStream (read to the end) and returns the bytes moved.
func transfer(ctx context.Context, drv driver, op string, a *wfv1.Artifact, file string) (int64, error) {
	switch op {
	case "open":
		r, err := drv.OpenStream(ctx, a)
		if err != nil {
			return 0, err
		}
		defer r.Close()
		return io.Copy(io.Discard, r)
	case "load":
		if err := drv.Load(ctx, a, file); err != nil {
			return 0, err
		}
		return treeSize(file)
	case "save":
		if err := drv.Save(ctx, file, a); err != nil {
			return 0, err
		}
		return treeSize(file)
	}
	return 0, fmt.Errorf("unknown operation %q", op)
}

// report times one transfer and prints its size and duration as JSON.
func report(run func() (int64, error)) int {
	start := time.Now()
	n, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("{\"bytes\":%d,\"seconds\":%f}\n", n, time.Since(start).Seconds())
	return 0
}

// treeSize is the byte count of a file, or of every regular file under a directory.
func treeSize(path string) (int64, error) {
	var n int64
	err := filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Size()
		}
		return err
	})
	return n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
