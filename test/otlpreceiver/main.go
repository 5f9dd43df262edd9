// An OTLP trace receiver for the tests, built on OpenTelemetry's own protocol
// definitions (go.opentelemetry.io/proto/otlp): it accepts OTLP/gRPC
// (TraceService/Export) and OTLP/HTTP (POST /v1/traces, protobuf or JSON) on
// free ports of -addr (default loopback), prints one line
// "listening grpc=HOST:PORT http=HOST:PORT", then each export it receives as
// one line of protojson. The tests read the spans from those lines. It runs
// until its stdin closes when that is a pipe or socket (its parent went away), else
// until a signal.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

var out sync.Mutex

func emit(req *coltrace.ExportTraceServiceRequest) {
	line, err := protojson.MarshalOptions{UseProtoNames: false}.Marshal(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "marshal:", err)
		return
	}
	out.Lock()
	defer out.Unlock()
	os.Stdout.Write(append(line, '\n'))
}

type traceService struct {
	coltrace.UnimplementedTraceServiceServer
}

func (traceService) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	emit(req)
	return &coltrace.ExportTraceServiceResponse{}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1", "address to listen on")
	flag.Parse()
	gl, err := net.Listen("tcp", net.JoinHostPort(*addr, "0"))
	if err != nil {
		panic(err)
	}
	hl, err := net.Listen("tcp", net.JoinHostPort(*addr, "0"))
	if err != nil {
		panic(err)
	}
	g := grpc.NewServer()
	coltrace.RegisterTraceServiceServer(g, traceService{})
	go func() { _ = g.Serve(gl) }()
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/traces", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req := &coltrace.ExportTraceServiceRequest{}
		ct := r.Header.Get("Content-Type")
		if strings.HasPrefix(ct, "application/json") {
			err = protojson.Unmarshal(body, req)
		} else if strings.HasPrefix(ct, "application/x-protobuf") {
			err = proto.Unmarshal(body, req)
		} else {
			http.Error(w, "unsupported content type "+ct, http.StatusUnsupportedMediaType)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		emit(req)
		resp, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(resp)
	})
	go func() { _ = http.Serve(hl, mux) }()
	fmt.Printf("listening grpc=%s http=%s\n", gl.Addr(), hl.Addr())
	if st, err := os.Stdin.Stat(); err == nil && st.Mode()&(os.ModeNamedPipe|os.ModeSocket) != 0 {
		_, _ = io.Copy(io.Discard, os.Stdin)
	} else {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
	}
	g.Stop()
}
