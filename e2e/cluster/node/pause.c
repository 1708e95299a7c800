/* The pod sandbox ("pause") image's only program: hold the pod's namespaces open until told to stop.
 *
 * Built here with `gcc -static` (e2e/plane/images.py) because no registry is reachable to pull
 * registry.k8s.io/pause. As PID 1 of a pod that shares its process namespace it also reaps
 * orphaned children, as the upstream pause does.
 */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction term = {.sa_handler = stop};
    struct sigaction child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
    sigemptyset(&term.sa_mask);
    sigemptyset(&child.sa_mask);
    if (sigaction(SIGTERM, &term, NULL) || sigaction(SIGINT, &term, NULL) || sigaction(SIGCHLD, &child, NULL)) {
        perror("pause: sigaction");
        return 1;
    }
    if (getpid() != 1) {
        fputs("pause: warning: not running as PID 1\n", stderr);
    }
    for (;;) {
        pause();
    }
}
