/*
 * A hostile container process: for as long as it is told to, it takes every descriptor it
 * can from every process it can name (pidfd_open + pidfd_getfd), and from /proc/PID/fd, root
 * and cwd, and tries to use each to reach the host: a file the test planted on the host
 * (its path given as argv[1]) opened relative to the stolen descriptor. It prints one line
 * per descriptor it got ("GOT pid fd -> what") and "ESCAPE ..." if it ever reached the
 * marker. It stops when the file argv[2] exists (the test creates it in the container), and
 * prints "DONE rounds=N".
 *
 * Built statically by tests/build.rs, for busybox root filesystems.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

static const char *marker;

static void try_escape(int fd, const char *how) {
    char path[PATH_MAX];
    /* Up as far as the tree goes, then down to the host's marker. */
    snprintf(path, sizeof path, "../../../../../../../../../../../../..%s", marker);
    int m = openat(fd, path, O_RDONLY | O_CLOEXEC);
    if (m < 0)
        m = openat(fd, marker + 1, O_RDONLY | O_CLOEXEC);
    if (m >= 0) {
        printf("ESCAPE via %s\n", how);
        fflush(stdout);
        close(m);
    }
}

static void describe(int pid, int num, int fd, const char *kind) {
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    target[n < 0 ? 0 : n] = 0;
    printf("GOT %s pid=%d fd=%d -> %s\n", kind, pid, num, target);
    char how[PATH_MAX + 64];
    snprintf(how, sizeof how, "%s of pid %d fd %d (%s)", kind, pid, num, target);
    try_escape(fd, how);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: steal MARKER STOPFILE\n");
        return 2;
    }
    marker = argv[1];
    int me = getpid();
    long rounds = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("STARTED\n");
    while (access(argv[2], F_OK) != 0) {
        rounds++;
        DIR *proc = opendir("/proc");
        if (!proc)
            return 3;
        struct dirent *e;
        while ((e = readdir(proc))) {
            int pid = atoi(e->d_name);
            if (pid <= 0 || pid == me)
                continue;
            int pidfd = syscall(SYS_pidfd_open, pid, 0);
            if (pidfd >= 0) {
                for (int n = 0; n < 64; n++) {
                    int fd = syscall(SYS_pidfd_getfd, pidfd, n, 0);
                    if (fd >= 0) {
                        describe(pid, n, fd, "getfd");
                        close(fd);
                    }
                }
                close(pidfd);
            }
            char p[64];
            const char *places[] = {"root", "cwd"};
            for (int i = 0; i < 2; i++) {
                snprintf(p, sizeof p, "/proc/%d/%s", pid, places[i]);
                int fd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (fd >= 0) {
                    char how[128];
                    snprintf(how, sizeof how, "/proc/%d/%s", pid, places[i]);
                    try_escape(fd, how);
                    close(fd);
                }
            }
        }
        closedir(proc);
    }
    printf("DONE rounds=%ld\n", rounds);
    return 0;
}
