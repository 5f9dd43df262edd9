/*
 * launch: the image's entrypoint. It binds the plugin's unix socket before
 * Node has even started and hands the listening descriptor to Node (fd 3).
 *
 * Why: argoexec stats the socket about 4 ms after it starts the plugin and,
 * when it is not there yet, looks again only a second later
 * (workflow/artifacts/plugin/plugin.go, NewDriver). Node cannot bind in 4 ms;
 * a small static program can. argoexec's client connects at once (the kernel
 * queues the connection on the listening socket) and its HTTP/2 handshake
 * completes as soon as Node takes the descriptor over, ~0.1 s later.
 * C, not Go: in that race the Go runtime's start (~1.5 ms under load) counted.
 *
 * Usage: launch <program> <script> <socket-path> [args...], as Argo appends
 * the socket path to the image's ENTRYPOINT. The launcher only ever binds in
 * a folder that exists and never reports an error itself: whatever it cannot
 * do (no folder, a live or foreign file at the path, a bad
 * ARGO_S3_PLUGIN_SOCKET_MODE) it leaves to the plugin, which binds on its own
 * and says what is wrong in its own words. The mode rule is
 * src/wire/socket.ts's (test/integration/launcher.test.ts holds the two equal).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

extern char **environ;

/* Where Node finds the socket (ARGO_S3_PLUGIN_LISTEN_FD). */
#define LISTEN_FD 3
#define LISTEN_FD_TEXT "3"

static int unix_addr(const char *path, struct sockaddr_un *a) {
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof a->sun_path) return -1;
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  memcpy(a->sun_path, path, n);
  return 0;
}

/* ARGO_S3_PLUGIN_SOCKET_MODE (three octal digits, optionally after a 0) if set;
 * else 0666 in a folder others may enter and write (Argo's emptyDir), 0660
 * otherwise. -1: leave it to the plugin (no folder, a malformed mode). */
static int socket_mode(const char *path) {
  char dir[4096];
  const char *slash = strrchr(path, '/');
  size_t n = slash ? (size_t)(slash - path) + 1 : 0;
  if (n >= sizeof dir) return -1;
  if (n == 0) strcpy(dir, ".");
  else {
    memcpy(dir, path, n);
    dir[n] = 0;
  }
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return -1;
  const char *v = getenv("ARGO_S3_PLUGIN_SOCKET_MODE");
  if (v) {
    size_t len = strlen(v);
    if (!(len == 3 || (len == 4 && v[0] == '0'))) return -1;
    int m = 0;
    for (size_t i = 0; i < len; i++) {
      if (v[i] < '0' || v[i] > '7') return -1;
      m = m * 8 + (v[i] - '0');
    }
    return m;
  }
  return (st.st_mode & 003) == 003 ? 0666 : 0660;
}

/* 1 when the path is free: absent, or a socket nobody listens on (now removed). */
static int clear_stale(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return errno == ENOENT;
  if (!S_ISSOCK(st.st_mode)) return 0;
  struct sockaddr_un a;
  if (unix_addr(path, &a) != 0) return 0;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  int r = connect(fd, (struct sockaddr *)&a, sizeof a);
  int err = errno;
  close(fd);
  if (r == 0 || err != ECONNREFUSED) return 0; /* live, or cannot tell: the plugin decides and says why */
  return unlink(path) == 0;
}

/* Leaves a listening socket at LISTEN_FD, or nothing at all. */
static int bind_socket(const char *path) {
  struct sockaddr_un a;
  if (unix_addr(path, &a) != 0) return 0;
  int mode = socket_mode(path);
  if (mode < 0 || !clear_stale(path)) return 0;
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return 0;
  }
  /* The mode before listen: a client that connects finds it final. */
  if (chmod(path, (mode_t)mode) != 0 || listen(fd, 511) != 0 || (fd != LISTEN_FD && dup2(fd, LISTEN_FD) != LISTEN_FD)) {
    close(fd);
    unlink(path);
    return 0;
  }
  if (fd != LISTEN_FD) close(fd);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fputs("usage: launch <program> <script> <socket-path> [args...]\n", stderr);
    return 2;
  }
  const char *socket_path = argc > 3 ? argv[3] : NULL;
  if (socket_path && socket_path[0] != '\0' && socket_path[0] != '-' && bind_socket(socket_path)) {
    /* Node serves the descriptor only when both say so; without them it binds the path itself. */
    if (setenv("ARGO_S3_PLUGIN_LISTEN_FD", LISTEN_FD_TEXT, 1) != 0 || setenv("ARGO_S3_PLUGIN_LISTEN_PATH", socket_path, 1) != 0) {
      unsetenv("ARGO_S3_PLUGIN_LISTEN_FD");
      close(LISTEN_FD);
      unlink(socket_path);
    }
  }
  execve(argv[1], argv + 1, environ);
  fprintf(stderr, "launch: cannot run %s: %s\n", argv[1], strerror(errno));
  return 127;
}
