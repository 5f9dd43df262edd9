package main

// The reference for `npm run bench`: Argo's built-in S3 driver
// (workflow/artifacts/s3 of the same v4.0.5 module) with its defaults, called
// the way argoexec calls it. The plugin replaces exactly this code, so its
// throughput, CPU and memory are what a user compares with.

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	wfv1 "github.com/argoproj/argo-workflows/v4/pkg/apis/workflow/v1alpha1"
	s3driver "github.com/argoproj/argo-workflows/v4/workflow/artifacts/s3"
)

type builtinRef struct {
	endpoint, bucket string
}

func runBuiltin(ctx context.Context, op string, ref builtinRef, key, file string) func() (int64, error) {
	return func() (int64, error) {
		if ref.endpoint == "" || ref.bucket == "" || key == "" {
			return 0, fmt.Errorf("builtin-%s needs -endpoint, -bucket and -key", op)
		}
		drv := &s3driver.ArtifactDriver{
			Endpoint:  ref.endpoint,
			Region:    "us-east-1",
			Secure:    false,
			AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"),
			SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
		}
		a := &wfv1.Artifact{Name: "bench", ArtifactLocation: wfv1.ArtifactLocation{S3: &wfv1.S3Artifact{
			S3Bucket: wfv1.S3Bucket{Endpoint: ref.endpoint, Bucket: ref.bucket, Insecure: ptr(true), Region: "us-east-1"},
			Key:      key,
		}}}
		if op == "savestream" {
			return builtinSaveStream(ctx, drv, a, file)
		}
		return transfer(ctx, drv, op, a, file)
	}
}

// builtinSaveStream is what Argo v4.1 does for a driver without a streaming
// upload of its own, the S3 one included: spool the stream to a temporary
// file, then Save that file. (v4.0.5 has no SaveStream; the file read here
// stands in for the executor's pipe.)
func builtinSaveStream(ctx context.Context, drv *s3driver.ArtifactDriver, a *wfv1.Artifact, file string) (int64, error) {
	in, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(file), "builtin-savestream-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, in)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	return n, drv.Save(ctx, tmp.Name(), a)
}

func ptr[T any](v T) *T { return &v }
