/* A child made with clone(CLONE_UNTRACED) binds and listens on 127.0.0.1:PORT.
 * Prints "bound PORT" from the child and exits 0 when that worked, else the errno and 1. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int bind_and_listen(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) {
        printf("bind failed: %s\n", strerror(errno));
        return 1;
    }
    if (listen(s, 1) != 0) {
        printf("listen failed: %s\n", strerror(errno));
        return 1;
    }
    printf("bound %d\n", port);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    int port = atoi(argv[1]);
    fflush(stdout);
    /* Like fork(), but no tracer may follow the child. */
    long pid = syscall(SYS_clone, CLONE_UNTRACED | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) {
        printf("clone failed: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        int rc = bind_and_listen(port);
        fflush(stdout);
        _exit(rc);
    }
    int status = 0;
    waitpid((pid_t)pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
