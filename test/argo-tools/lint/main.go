// Command argo-lint runs Argo's own linter (the code behind `argo lint
// --offline --strict`) on the files given. The argo CLI itself cannot be built
// from the v4.0.5 module (it embeds the UI bundle, which the module zip does
// not carry), so this calls the same package the CLI's lint command calls.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/argoproj/argo-workflows/v4/cmd/argo/commands/client"
	"github.com/argoproj/argo-workflows/v4/cmd/argo/lint"
	"github.com/argoproj/argo-workflows/v4/util/logging"
)

var kinds = []string{"workflows", "workflowtemplates", "cronworkflows", "clusterworkflowtemplates"}

func main() {
	files := os.Args[1:]
	if len(files) == 0 {
		fmt.Fprintln(os.Stderr, "usage: argo-lint FILE...")
		os.Exit(2)
	}
	ctx := logging.WithLogger(context.Background(), logging.NewSlogLogger(logging.Error, logging.Text))
	client.Offline = true
	client.OfflineFiles = files
	ctx, api, err := client.NewAPIClient(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	opts := lint.LintOptions{Files: files, Strict: true, DefaultNamespace: "argo", Printer: os.Stdout}
	if err := lint.RunLint(ctx, api, kinds, "pretty", true, opts); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
