package main

// Argo v4.0.5's plugin Driver (and its generated client) has no SaveStream /
// GetCapabilities; those arrive in v4.1. So we dial the socket the way the
// v4.0.5 driver does and call the raw methods through a pass-through codec,
// encoding the tiny wrapper messages by hand with protowire.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/argoproj/argo-workflows/v4/pkg/apiclient/artifact"
	wfv1 "github.com/argoproj/argo-workflows/v4/pkg/apis/workflow/v1alpha1"
)

const streamChunkSize = 2 << 20 // Argo v4.1 sends 2 MiB chunk frames

// rawCodec passes pre-encoded protobuf bytes through. Named "proto" so the
// content-type stays application/grpc+proto.
type rawCodec struct{}

func (rawCodec) Name() string                  { return "proto" }
func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}

// dialRaw mirrors plugin.NewDriver's grpc.NewClient call (unix socket, insecure).
func dialRaw(socketPath string, connectionTimeout time.Duration) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+socketPath,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			d := &net.Dialer{Timeout: connectionTimeout}
			return d.DialContext(ctx, "unix", strings.TrimPrefix(addr, "unix://"))
		}),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
}

// getCapabilities returns GetCapabilitiesResponse.supports_save_stream (field 1),
// a message v4.0.5 lacks, so it is decoded by hand.
func getCapabilities(ctx context.Context, conn *grpc.ClientConn) (bool, error) {
	var b []byte
	if err := conn.Invoke(ctx, "/artifact.ArtifactService/GetCapabilities", []byte{}, &b); err != nil {
		return false, err
	}
	supports := false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return false, protowire.ParseError(m)
		}
		if num == 1 && typ == protowire.VarintType {
			v, _ := protowire.ConsumeVarint(b[n:])
			supports = v != 0 // last occurrence wins, as in proto3
		}
		b = b[n+m:]
	}
	return supports, nil
}

// saveStream uploads r like Argo v4.1's client: one metadata-only frame
// (output_artifact = 1), then chunk (= 2) frames of at most 2 MiB read as they
// go, CloseSend, then SaveArtifactResponse {success = 1, error = 2}. Returns
// the number of chunk frames sent.
func saveStream(ctx context.Context, conn *grpc.ClientConn, a *wfv1.Artifact, r io.Reader) (int, error) {
	// Same conversion as the driver's unexported convertToGRPC, for the fields we set.
	g := &artifact.Artifact{Name: a.Name, Plugin: &artifact.PluginArtifact{
		Name: string(a.Plugin.Name), Configuration: a.Plugin.Configuration, Key: a.Plugin.Key}}
	artBytes, err := g.Marshal() // gogo-generated marshaller, not google.golang.org/protobuf
	if err != nil {
		return 0, err
	}
	desc := &grpc.StreamDesc{StreamName: "SaveStream", ClientStreams: true}
	stream, err := conn.NewStream(ctx, desc, "/artifact.ArtifactService/SaveStream")
	if err != nil {
		return 0, err
	}
	// Frame 0 carries only the artifact; every later frame only a chunk.
	// io.EOF from SendMsg means the server already answered; RecvMsg below has its status.
	chunks := 0
	if err := stream.SendMsg(protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), artBytes)); err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("send metadata frame: %w", err)
	} else if err == nil {
		buf := make([]byte, streamChunkSize)
		for {
			n, rerr := io.ReadFull(r, buf)
			if n > 0 {
				chunks++
				err := stream.SendMsg(protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), buf[:n]))
				if errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					return chunks, fmt.Errorf("send frame %d: %w", chunks, err)
				}
			}
			if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
				break
			} else if rerr != nil {
				return chunks, fmt.Errorf("read input: %w", rerr)
			}
		}
	}
	if err := stream.CloseSend(); err != nil {
		return chunks, fmt.Errorf("close send: %w", err)
	}
	var resp []byte
	if err := stream.RecvMsg(&resp); err != nil {
		return chunks, fmt.Errorf("receive response: %w", err)
	}
	// The response is v4.0.5's SaveArtifactResponse, so its own type decodes it.
	out := &artifact.SaveArtifactResponse{}
	if err := out.Unmarshal(resp); err != nil {
		return chunks, err
	}
	if !out.Success {
		return chunks, fmt.Errorf("save stream: success=false error=%q", out.Error)
	}
	return chunks, nil
}
