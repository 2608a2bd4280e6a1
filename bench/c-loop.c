/*
 * The reference exec loop for bench/loop-runner.ts: what hookmeter's Worker loop
 * (agent/exec-loop-worker.ts) does, in plain C, so that the ratio of the two shows what running
 * the loop from Bun through FFI costs. The child is set up the same way: stdin, stdout and
 * stderr on /dev/null, descriptors above 2 closed, SIGPIPE and SIGXFSZ at their defaults, an
 * empty signal mask, and the same fixed environment.
 *
 * usage: c-loop OUT ITERATIONS WARMUP BINARY [ARG...]
 * Writes one line per counted exec to OUT: posix_spawn to waitpid return on CLOCK_MONOTONIC, in
 * ns. Exits 1 on a failed call or a child that did not exit with status 0.
 *
 * Built by the benchmark at run time: gcc -O2 -o c-loop c-loop.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

static void die(const char *call, int err) {
  fprintf(stderr, "c-loop: %s: %s\n", call, strerror(err));
  exit(1);
}

static long parse_count(const char *s, const char *what) {
  char *end;
  long n = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || n < 0) {
    fprintf(stderr, "c-loop: %s must be a non-negative integer, got %s\n", what, s);
    exit(2);
  }
  return n;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: c-loop OUT ITERATIONS WARMUP BINARY [ARG...]\n");
    return 2;
  }
  long iterations = parse_count(argv[2], "ITERATIONS");
  long warmup = parse_count(argv[3], "WARMUP");
  char *binary = argv[4];
  char **child_argv = &argv[4];
  char *envp[] = {"PATH=/usr/bin:/bin", "LC_ALL=C", NULL};

  /* the samples are kept in memory and written at the end, so that no file I/O falls inside the
     timed execs */
  long long *samples = calloc(iterations > 0 ? iterations : 1, sizeof *samples);
  if (!samples) die("calloc", ENOMEM);

  posix_spawn_file_actions_t fa;
  int rc = posix_spawn_file_actions_init(&fa);
  if (rc) die("posix_spawn_file_actions_init", rc);
  if ((rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)))
    die("posix_spawn_file_actions_addopen", rc);
  if ((rc = posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0)))
    die("posix_spawn_file_actions_addopen", rc);
  if ((rc = posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0)))
    die("posix_spawn_file_actions_addopen", rc);
  if ((rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3)))
    die("posix_spawn_file_actions_addclosefrom_np", rc);

  posix_spawnattr_t attr;
  sigset_t defaults, mask;
  if ((rc = posix_spawnattr_init(&attr))) die("posix_spawnattr_init", rc);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGXFSZ);
  sigemptyset(&mask);
  if ((rc = posix_spawnattr_setsigdefault(&attr, &defaults)))
    die("posix_spawnattr_setsigdefault", rc);
  if ((rc = posix_spawnattr_setsigmask(&attr, &mask))) die("posix_spawnattr_setsigmask", rc);
  if ((rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)))
    die("posix_spawnattr_setflags", rc);

  for (long i = 0; i < warmup + iterations; i++) {
    struct timespec t0, t1;
    pid_t pid;
    int status;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if ((rc = posix_spawn(&pid, binary, &fa, &attr, child_argv, envp))) die("posix_spawn", rc);
    while (waitpid(pid, &status, 0) != pid) {
      if (errno != EINTR) die("waitpid", errno);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "c-loop: %s ended with wait status 0x%x\n", binary, status);
      return 1;
    }
    if (i >= warmup) {
      samples[i - warmup] =
          (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
    }
  }

  FILE *out = fopen(argv[1], "w");
  if (!out) die("fopen", errno);
  for (long i = 0; i < iterations; i++) fprintf(out, "%lld\n", samples[i]);
  if (fclose(out) != 0) die("fclose", errno);
  return 0;
}
