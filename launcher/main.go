// launch: the image's entrypoint. It binds the plugin's unix socket before
// Node has even started and hands the listening descriptor to Node (fd 3).
//
// Why: argoexec stats the socket about 10 ms after it starts the plugin and,
// when it is not there yet, looks again only a second later
// (workflow/artifacts/plugin/plugin.go, NewDriver). Node cannot bind in 10 ms;
// a static program can. argoexec's client connects at once (the kernel queues
// the connection on the listening socket) and its HTTP/2 handshake completes
// as soon as Node takes the descriptor over, ~0.1 s later.
//
// Usage: launch <program> <script> <socket-path> [args...], as Argo appends
// the socket path to the image's ENTRYPOINT. The launcher only ever binds in
// a folder that exists (Argo's emptyDir) and never reports an error itself:
// whatever it cannot do (no folder, a live or foreign file at the path, a bad
// ARGO_S3_PLUGIN_SOCKET_MODE) it leaves to the plugin, which binds on its own
// and says what is wrong in its own words. Keep the mode rule equal to
// src/wire/socket.ts (the launcher test holds the two equal).
package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// listenFD is where Node finds the socket (ARGO_S3_PLUGIN_LISTEN_FD).
const listenFD = 3

func main() {
	if len(os.Args) < 3 {
		os.Stderr.WriteString("usage: launch <program> <script> <socket-path> [args...]\n")
		os.Exit(2)
	}
	argv := os.Args[1:]
	env := os.Environ()
	if len(argv) >= 3 && argv[2] != "" && !strings.HasPrefix(argv[2], "-") {
		if bind(argv[2]) {
			env = append(env, "ARGO_S3_PLUGIN_LISTEN_FD="+strconv.Itoa(listenFD), "ARGO_S3_PLUGIN_LISTEN_PATH="+argv[2])
		}
	}
	err := syscall.Exec(argv[0], argv, env)
	os.Stderr.WriteString("launch: cannot run " + argv[0] + ": " + err.Error() + "\n")
	os.Exit(127)
}

// bind leaves a listening socket at fd 3, or nothing at all.
func bind(path string) bool {
	if len(path) >= 108 { // sun_path
		return false
	}
	mode, ok := socketMode(path)
	if !ok || !clearStale(path) {
		return false
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return false
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		syscall.Close(fd)
		return false
	}
	// The mode before listen: a client that connects finds it final.
	if syscall.Chmod(path, mode) != nil || syscall.Listen(fd, 511) != nil {
		syscall.Close(fd)
		syscall.Unlink(path)
		return false
	}
	if fd != listenFD {
		if syscall.Dup3(fd, listenFD, 0) != nil {
			syscall.Close(fd)
			syscall.Unlink(path)
			return false
		}
		syscall.Close(fd)
	}
	return true
}

// socketMode: ARGO_S3_PLUGIN_SOCKET_MODE (strict octal) if set; else 0666 in a
// folder others may enter and write (Argo's emptyDir), 0660 otherwise. A
// folder that does not exist is the plugin's to make.
func socketMode(path string) (uint32, bool) {
	dir := path[:strings.LastIndexByte(path, '/')+1]
	if dir == "" {
		dir = "."
	}
	var st syscall.Stat_t
	if syscall.Stat(dir, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return 0, false
	}
	if v, set := os.LookupEnv("ARGO_S3_PLUGIN_SOCKET_MODE"); set {
		// As the plugin's settings: three octal digits, optionally after a 0.
		if !(len(v) == 3 || (len(v) == 4 && v[0] == '0')) || strings.Trim(v, "01234567") != "" {
			return 0, false
		}
		m, err := strconv.ParseUint(v, 8, 32)
		if err != nil || m > 0o777 {
			return 0, false
		}
		return uint32(m), true
	}
	if st.Mode&0o003 == 0o003 {
		return 0o666, true
	}
	return 0o660, true
}

// clearStale: true when the path is free (absent, or a socket nobody listens on, now removed).
func clearStale(path string) bool {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return err == syscall.ENOENT
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFSOCK {
		return false
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: path})
	syscall.Close(fd)
	if err != syscall.ECONNREFUSED {
		return false // live, or cannot tell: the plugin decides and says why
	}
	return syscall.Unlink(path) == nil
}
