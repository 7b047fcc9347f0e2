/*
 * The pod sandbox's init process ("pause"): it holds the pod's namespaces open,
 * reaps the zombies of processes that end up as its children, and exits on
 * SIGINT or SIGTERM. Written for iris-operator's offline cluster, after the
 * behaviour of Kubernetes' build/pause/linux/pause.c. Built with gcc -static.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define VERSION "3.10-iris"

static void on_exit_signal(int sig) {
  (void)sig;
  _exit(0);
}

static void on_child(int sig) {
  (void)sig;
  int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-v") == 0) {
      printf("pause.c %s\n", VERSION);
      return 0;
    }
  }
  if (getpid() != 1) {
    fprintf(stderr, "Warning: pause should be the first process\n");
  }

  struct sigaction exit_action = {.sa_handler = on_exit_signal};
  sigemptyset(&exit_action.sa_mask);
  if (sigaction(SIGINT, &exit_action, NULL) < 0 || sigaction(SIGTERM, &exit_action, NULL) < 0) {
    perror("sigaction");
    return 1;
  }
  struct sigaction child_action = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
  sigemptyset(&child_action.sa_mask);
  if (sigaction(SIGCHLD, &child_action, NULL) < 0) {
    perror("sigaction");
    return 2;
  }

  for (;;) {
    pause();
  }
  fprintf(stderr, "Error: infinite loop terminated\n");
  return 42;
}
