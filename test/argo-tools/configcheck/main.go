// configcheck reads a workflow-controller ConfigMap (YAML, from a file or
// stdin) and parses it with Argo's own controller-config code: the same
// config.Controller.Get the workflow-controller and argo-server call, here on
// a fake clientset holding the ConfigMap. It prints the parsed Config as JSON,
// or Argo's error and exit status 1. Test bed only (the packaging tests run it
// on what deploy/ and the Helm values render).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/argoproj/argo-workflows/v4/config"
	apiv1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"
)

func main() {
	in := io.Reader(os.Stdin)
	if len(os.Args) > 1 {
		f, err := os.Open(os.Args[1])
		if err != nil {
			fail(err)
		}
		defer f.Close()
		in = f
	}
	raw, err := io.ReadAll(in)
	if err != nil {
		fail(err)
	}
	var cm apiv1.ConfigMap
	if err := yaml.UnmarshalStrict(raw, &cm); err != nil {
		fail(fmt.Errorf("not a ConfigMap: %w", err))
	}
	if cm.Namespace == "" {
		cm.Namespace = "argo"
	}
	client := fake.NewSimpleClientset(&cm)
	cfg, err := config.NewController(cm.Namespace, cm.Name, client).Get(context.Background())
	if err != nil {
		fail(err)
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		fail(err)
	}
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
