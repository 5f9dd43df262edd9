// Linux half of argoexec's osspecific package, which the v4.0.5 module zip on
// the Go proxy lacks (only darwin and windows files ship), so argoexec cannot
// be built for Linux from the module alone. Written for this test bed and
// added at build time with `go build -overlay`; it keeps the same contract:
// plugins run in their own process group and signals go to the group.
package osspecific

import (
	"os"
	"syscall"

	"github.com/argoproj/argo-workflows/v4/util/errors"
)

// Term is the signal argoexec sends to stop a container's process.
var Term = syscall.SIGTERM

// CanIgnoreSignal: child-exit and urgent-data notices are not forwarded.
func CanIgnoreSignal(s os.Signal) bool {
	return s == syscall.SIGCHLD || s == syscall.SIGURG
}

// Kill signals the process group the child leads, or the child alone.
func Kill(pid int, s syscall.Signal) error {
	if pgid, err := syscall.Getpgid(pid); err == nil {
		return syscall.Kill(-pgid, s)
	}
	return syscall.Kill(pid, s)
}

// Setpgid starts the child as the leader of a new process group.
func Setpgid(a *syscall.SysProcAttr) {
	a.Setpgid = true
}

// Wait blocks until the child ends and reports how, as argoexec's callers expect.
func Wait(p *os.Process) error {
	st, err := p.Wait()
	if err != nil {
		return err
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return errors.NewExitErr(128 + int(ws.Signal()))
	}
	if code := st.ExitCode(); code != 0 {
		return errors.NewExitErr(code)
	}
	return nil
}
