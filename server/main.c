/* snbd-server: start-up and shutdown (options: config.c). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "listen.h"
#include "log.h"
#include "notify.h"

static struct server srv;
static struct options opt;
static int saved_argc;          /* for SIGHUP's reload_config */
static char **saved_argv;
/* How often the accept loop wakes to update systemd's STATUS= (the
 * connection count): a bounded rate however fast connections come. */
#define NOTIFY_TICK_MS 1000
static pid_t run_pid = -1;
static int run_status;
static char *private_dir;        /* -U - */

/* The command line (and the config file it names); exits on an error. */
static void parse_args(int argc, char **argv)
{
  config_defaults(&srv, &opt);
  pthread_mutex_init(&srv.creds_lock, NULL);
  pthread_mutex_init(&srv.conns_lock, NULL);
  pthread_cond_init(&srv.conns_cond, NULL);
  saved_argc = argc;
  saved_argv = argv;
  if (config_parse_args(&srv, &opt, argc, argv) == -1) {
    fprintf(stderr, "snbd-server: error: %s\n", error_message());
    exit(EXIT_FAILURE);
  }
  if (srv.nexports == 0) {
    fprintf(stderr, "snbd-server: no export given (try: snbd-server "
                    "memory:1G; snbd-server --help lists the options)\n");
    exit(EXIT_FAILURE);
  }
}

static int load_creds(void)
{
  struct tls_server_config cfg = {
    .cert_dir = srv.tls_certs, .psk_file = srv.tls_psk,
    .priority = srv.tls_priority, .verify_peer = srv.tls_verify_peer,
    .no_tickets = srv.tls_tickets_off != 0,
    .ticket_lifetime = (unsigned)srv.tls_ticket_lifetime,
    .allow_old_versions = srv.tls_old_versions,
  };
  struct tls_creds *c = tls_creds_load_server(&cfg);
  if (!c)
    return -1;
  /* A reload never silently drops what was loaded: a CRL deleted by
   * mistake would un-revoke every certificate in it. */
  const char *dropped = srv.creds ? tls_creds_dropped(
    tls_creds_info(srv.creds), tls_creds_info(c)) : NULL;
  if (dropped) {
    tls_creds_unref(c);
    set_error(EINVAL, "%s", dropped);
    return -1;
  }
  char what[1024];
  tls_creds_describe(tls_creds_info(c), what, sizeof what);
  log_info("TLS credentials loaded: %s", what);
  pthread_mutex_lock(&srv.creds_lock);
  struct tls_creds *old = srv.creds;
  srv.creds = c;
  pthread_mutex_unlock(&srv.creds_lock);
  if (old)
    tls_creds_unref(old);
  return 0;
}

/* SIGHUP: the credentials, then the configuration's exports; each part
 * that fails leaves its part as it was. */
static void reload(void)
{
  notify_reloading();
  if (srv.tls_mode == TLS_MODE_OFF)
    log_info("SIGHUP: TLS is off, no credentials to reload");
  else if (load_creds() == -1) {
    metrics_credential_reload(false);
    log_error("SIGHUP: keeping the old credentials: %s", error_message());
  }
  else {
    metrics_credential_reload(true);
    log_info("SIGHUP: TLS credentials reloaded");
  }
  reload_config(&srv, &opt, saved_argc, saved_argv);
  notify_send("READY=1");
}

/* The accept loop's tick: systemd's STATUS= line. */
static void tick(void)
{
  pthread_mutex_lock(&srv.conns_lock);
  int nconns = srv.nconns, nneg = srv.nnegotiating;
  pthread_mutex_unlock(&srv.conns_lock);
  notify_status(nconns, nneg);
}

static int on_event(struct server *s, char ev)
{
  (void)s;
  if (ev == 'T')
    return 'T';
  if (ev == 'H') {
    reload();
    return 0;
  }
  if (ev == 'P') {
    tick();
    return 0;
  }
  if (ev == 'C' && run_pid > 0) {
    int st;
    if (waitpid(run_pid, &st, WNOHANG) == run_pid) {
      run_status = WIFEXITED(st) ? WEXITSTATUS(st)
                   : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 1;
      run_pid = -1;
      return 'C';
    }
  }
  return 0;
}

static void setup_listeners(struct listener *ls, int *n)
{
  int activated = listen_activation(ls, MAX_LISTENERS, n);
  if (activated > 0)
    return;
  if (opt.unix_path) {
    if (strcmp(opt.unix_path, "-") == 0) {
      char tmpl[] = "/tmp/snbd-XXXXXX";
      const char *dir = mkdtemp(tmpl);
      if (!dir || asprintf(&opt.unix_real, "%s/socket", dir) == -1) {
        log_error("cannot make a private socket directory: %m");
        exit(EXIT_FAILURE);
      }
      private_dir = strdup(dir);
    }
    else if (!(opt.unix_real = strdup(opt.unix_path)))
      exit(EXIT_FAILURE);
    if (listen_unix(opt.unix_real, &ls[(*n)++]) == -1)
      exit(EXIT_FAILURE);
  }
  if (opt.unix_path && opt.nbind == 0 && opt.port < 0)
    return;          /* Unix socket only */
  int port = opt.port < 0 ? NBD_DEFAULT_PORT : opt.port;
  if (opt.nbind == 0) {
    if (listen_tcp("127.0.0.1", port, ls, MAX_LISTENERS, n) == -1)
      exit(EXIT_FAILURE);
    /* ::1 on the same port ("-p 0": the port 127.0.0.1 got) */
    if (listen_tcp("::1", ls[*n - 1].port, ls, MAX_LISTENERS, n) == -1)
      log_warn("not listening on ::1");
    return;
  }
  for (int i = 0; i < opt.nbind; i++)
    if (listen_tcp(opt.bind[i], port, ls, MAX_LISTENERS, n) == -1)
      exit(EXIT_FAILURE);
}

/* --run: $uri per doc/uri.md for the default export. */
static void start_run(const struct listener *ls, int n)
{
  const char *scheme_tls = srv.tls_mode == TLS_MODE_REQUIRE ? "s" : "";
  char *uri = NULL;
  char port[16] = "";
  const char *host = "localhost";      /* the default 127.0.0.1 and ::1 */
  char hostbuf[sizeof ls[0].desc];
  for (int i = 0; i < n; i++)
    if (ls[i].family != AF_UNIX && !port[0]) {
      snprintf(port, sizeof port, "%d", ls[i].port);
      if (opt.nbind > 0) {     /* "[::1]:port" / "127.0.0.2:port" */
        snprintf(hostbuf, sizeof hostbuf, "%s", ls[i].desc);
        char *colon = strrchr(hostbuf, ':');
        if (colon)
          *colon = '\0';
        host = hostbuf;
      }
    }
  int r = opt.unix_real
    ? asprintf(&uri, "nbd%s+unix:///?socket=%s", scheme_tls, opt.unix_real)
    : asprintf(&uri, "nbd%s://%s:%s/", scheme_tls, host, port);
  if (r == -1)
    exit(EXIT_FAILURE);
  setenv("uri", uri, 1);
  setenv("unixsocket", opt.unix_real ? opt.unix_real : "", 1);
  setenv("port", port, 1);
  free(uri);
  run_pid = fork();
  if (run_pid == -1) {
    log_error("fork: %m");
    exit(EXIT_FAILURE);
  }
  if (run_pid == 0) {
    signal(SIGPIPE, SIG_DFL);
    execl("/bin/sh", "sh", "-c", opt.run, (char *)NULL);
    _exit(127);
  }
}

static void refuse_plain_text(const char *where)
{
  log_error("refusing to serve in clear text on %s: give TLS credentials "
            "(--tls-psk / --tls-certificates), or --tls=off to accept the "
            "risk", where);
  exit(EXIT_FAILURE);
}

/* Before binding anything: -i addresses beyond loopback need TLS or an
 * explicit --tls (secure by default). */
static void check_binds(void)
{
  if (srv.tls_mode_set || srv.tls_certs || srv.tls_psk)
    return;
  for (int i = 0; i < opt.nbind; i++)
    if (!addr_is_local(opt.bind[i]))
      refuse_plain_text(opt.bind[i]);
}

/* --tls=on (SELECTIVETLS) serves every export without tls-only or allow=
 * in clear text: name them for each address beyond loopback. */
static void warn_clear_text(const char *where)
{
  char names[512] = "";
  size_t len = 0;
  if (srv.tls_mode != TLS_MODE_ON)
    return;
  for (size_t i = 0; i < srv.table->n && len < sizeof names; i++)
    if (!srv.table->v[i].tls_only && !srv.table->v[i].allow)
      len += (size_t)snprintf(names + len, sizeof names - len,
                              "%s" EXPORT_FMT, len ? ", " : "",
                              EXPORT_ARGS(srv.table->v[i].name));
  if (len)
    log_warn("--tls=on serves export(s) %s in clear text on %s, beyond "
             "loopback: mark them tls-only, or use --tls=require", names,
             where);
}

/* Clear text beyond loopback must be asked for (an explicit --tls), and
 * --tls=on's clear-text exports are named. */
static void check_clear_text(const char *where)
{
  if (srv.tls_mode != TLS_MODE_REQUIRE && !srv.tls_mode_set)
    refuse_plain_text(where);
  warn_clear_text(where);
}

static void check_tls_defaults(const struct listener *ls, int n)
{
  bool have_creds = srv.tls_certs || srv.tls_psk;
  if (!srv.tls_mode_set)
    srv.tls_mode = have_creds ? TLS_MODE_REQUIRE : TLS_MODE_OFF;
  if (srv.tls_mode != TLS_MODE_OFF && !have_creds) {
    log_error("--tls=%s needs --tls-certificates or --tls-psk",
              srv.tls_mode == TLS_MODE_ON ? "on" : "require");
    exit(EXIT_FAILURE);
  }
  /* Secure by default: clear text beyond loopback must be asked for. */
  for (int i = 0; i < n; i++)    /* also sockets systemd handed us */
    if (!listener_is_local(&ls[i]))
      check_clear_text(ls[i].desc);
  char peer[128];
  if (opt.single && !fd_peer_is_local(0, peer, sizeof peer))
    check_clear_text(peer);      /* -s: the one client's address */
  if (exports_check_tls(srv.table->v, srv.table->n,
                        srv.tls_mode == TLS_MODE_OFF) == -1) {
    log_error("%s", error_message());
    exit(EXIT_FAILURE);
  }
  if (srv.tls_mode != TLS_MODE_OFF && load_creds() == -1) {
    log_error("%s", error_message());
    exit(EXIT_FAILURE);
  }
}

/* "TLS required (X.509, client certificates verified)". */
static void tls_describe(char *buf, size_t size)
{
  static const char *const modes[] = {
    [TLS_MODE_OFF] = "clear text (TLS off)",
    [TLS_MODE_ON] = "TLS optional (needed by tls-only exports)",
    [TLS_MODE_REQUIRE] = "TLS required",
  };
  snprintf(buf, size, "%s%s%s%s%s%s", modes[srv.tls_mode],
           srv.tls_mode == TLS_MODE_OFF ? "" : " (",
           srv.tls_mode == TLS_MODE_OFF || !srv.tls_certs ? "" : "X.509",
           srv.tls_certs && srv.tls_psk ? " and " : "",
           srv.tls_mode == TLS_MODE_OFF || !srv.tls_psk ? "" : "PSK",
           srv.tls_mode == TLS_MODE_OFF ? ""
           : srv.tls_verify_peer ? ", client certificates verified)" : ")");
}

/* What an operator wants to see at start: where the server listens, with
 * which TLS mode, and what it serves. */
static void log_start_lines(const struct listener *ls, int n)
{
  char tls[128], line[1024];
  tls_describe(tls, sizeof tls);
  for (int i = 0; i < n; i++)
    log_info("listening on %s, %s", ls[i].desc, tls);
  if (opt.single)
    log_info("serving one client on stdin/stdout, %s", tls);
  for (size_t i = 0; i < srv.table->n; i++) {
    export_describe(&srv.table->v[i], i == 0, line, sizeof line);
    log_info("%s", line);
  }
}

/* --check-config: everything start-up checks, short of listening. */
static void check_config(void)
{
  log_init("snbd-server", LOG_TO_STDERR, opt.verbose);
  if (tls_global_init() == -1)
    exit(EXIT_FAILURE);
  if (exports_open(&srv, opt.read_only) == -1)
    exit(EXIT_FAILURE);
  check_binds();
  check_tls_defaults(NULL, 0);
  log_start_lines(NULL, 0);
  log_info("configuration OK: %zu export%s", srv.table->n,
           srv.table->n == 1 ? "" : "s");
  exports_close(&srv);
  if (srv.creds)
    tls_creds_unref(srv.creds);
  config_free(&srv, &opt);
  exit(EXIT_SUCCESS);
}

/* FILE.tmp is made afresh (O_EXCL, O_NOFOLLOW: a symlink planted there
 * is removed, never followed, and one planted again after that fails the
 * open) and renamed over FILE, which replaces a symlink at FILE rather
 * than writing through it.  The directory walk follows symlinks: Debian's
 * /var/run is one (docs/security.md 36). */
static void write_pid_file(void)
{
  if (!opt.pid_file)
    return;
  char tmp[PATH_MAX], line[32];
  snprintf(tmp, sizeof tmp, "%s.tmp", opt.pid_file);
  int n = snprintf(line, sizeof line, "%d\n", (int)getpid());
  if (unlink(tmp) == -1 && errno != ENOENT)
    goto fail;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                0644);
  if (fd == -1)
    goto fail;
  bool ok = fchmod(fd, 0644) == 0 && write(fd, line, (size_t)n) == n;
  if (close(fd) == -1 || !ok || rename(tmp, opt.pid_file) == -1)
    goto fail;
  return;
fail:
  log_error("pid file %s: %m", opt.pid_file);
  exit(EXIT_FAILURE);
}

static void cleanup_files(void)
{
  if (opt.unix_real)
    unlink(opt.unix_real);
  if (private_dir)
    rmdir(private_dir);
  if (opt.pid_file)
    unlink(opt.pid_file);
}

/* Request buffers come from and go back to the heap instead of a fresh
 * mmap per request: glibc's default maps anything over 128 KiB-32 MiB
 * afresh, so every 256 KiB nbdcopy request cost 64 page faults, zeroing
 * and a TLB shootdown on munmap (12% of the server's CPU in a TLS copy).
 * 32 MiB is the largest threshold glibc accepts on 64-bit (a larger one
 * is ignored, leaving the default), so only requests between that and
 * the 64 MiB maximum payload are mapped afresh.  Free memory at the top
 * of a heap is kept up to 8 MiB (32 requests of 256 KiB) and given back
 * beyond that: malloc_trim (when a connection with large buffers closes,
 * conn.c) gives back free pages inside every heap but never the top of a
 * thread's heap, and with 64 MiB kept there, six thread heaps held
 * 190 MiB after clients that had pinned 256 MiB of replies closed
 * (tests/load/test-reply-memory.py). */
static void tune_malloc(void)
{
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 8 << 20);
}

/* One descriptor per connection: lift the soft limit (1,024 by default)
 * to the hard one, so max-connections rather than the default decides. */
static void raise_fd_limit(void)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == rl.rlim_max)
    return;
  rlim_t want = (rlim_t)srv.max_connections + 64;
  rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want
                ? (want > rl.rlim_cur ? want : rl.rlim_cur) : rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
    log_warn("cannot raise the descriptor limit: %m");
  if (rl.rlim_cur < want)
    log_debug("descriptor limit %llu: fewer than max-connections %d "
              "connections can be served at once",
              (unsigned long long)rl.rlim_cur, srv.max_connections);
}

/* Everything before serving: logging, TLS, signals, exports, worker
 * threads.  Exits on failure. */
static void start_up(void)
{
  log_init("snbd-server", (enum log_target)opt.log_to, opt.verbose);
  if (tls_global_init() == -1 || signals_init() == -1 ||
      pipe2(srv.wake_pipe, O_CLOEXEC) == -1) {
    log_error("start-up: %m");
    exit(EXIT_FAILURE);
  }
  raise_fd_limit();
  if (exports_open(&srv, opt.read_only) == -1)
    exit(EXIT_FAILURE);
  int threads = srv.threads;     /* srv's stays as configured (reload) */
  if (threads <= 0) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    threads = ncpu > 2 ? (int)ncpu * 4 : 8;
  }
  if (pool_start(threads) == -1) {
    log_error("cannot start worker threads");
    exit(EXIT_FAILURE);
  }
}

/* Stop accepting, wake every reader, let in-flight requests finish,
 * flush (docs/security.md 18).  why: what ended the serving loop.
 * Returns the exit status. */
static int shut_down(struct listener *ls, int n, int why)
{
  notify_send("STOPPING=1");
  for (int i = 0; i < n; i++)
    close(ls[i].fd);
  srv.shutting_down = 1;
  if (write(srv.wake_pipe[1], "x", 1) != 1)
    log_warn("wake pipe: %m");
  if (why == 'T' && run_pid > 0)
    kill(run_pid, SIGTERM);
  if (conns_shutdown_wait(&srv, 10) > 0) {
    /* Their threads still use the exports, the pool and the libraries
     * under them, and may wake at any moment: nothing is freed or joined
     * (a worker stuck in a backend would hang the join), no destructor
     * runs, and the exit says the data was not flushed. */
    cleanup_files();
    notify_close();
    log_error("exiting without the final flush of those exports");
    _exit(EXIT_FAILURE);
  }
  pool_stop();
  metrics_stop();         /* before what a scrape reads goes away */
  bool flush_failed = exports_close(&srv) == -1;
  cleanup_files();
  if (run_pid > 0) {
    int st;
    if (waitpid(run_pid, &st, 0) == run_pid)
      run_status = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
  }
  if (srv.creds)
    tls_creds_unref(srv.creds);
  bool run = opt.run != NULL;
  config_free(&srv, &opt);
  notify_close();
  if (run)
    return run_status ? run_status : flush_failed ? EXIT_FAILURE : 0;
  return why == -1 || flush_failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
  tune_malloc();
  parse_args(argc, argv);
  if (opt.check_config)
    check_config();
  notify_init();
  start_up();
  struct listener ls[MAX_LISTENERS];
  int n = 0;
  /* Before the first connection can start (-s starts one at once):
   * counting is switched on once, before any thread counts. */
  if (opt.metrics &&
      metrics_start(&srv, opt.metrics, opt.metrics_allow_remote) == -1)
    exit(EXIT_FAILURE);
  if (opt.single) {
    check_tls_defaults(ls, 0);
    single_start(&srv);
  }
  else {
    check_binds();
    setup_listeners(ls, &n);
    check_tls_defaults(ls, n);
  }
  log_start_lines(ls, n);
  write_pid_file();
  if (opt.run)
    start_run(ls, n);
  notify_send("READY=1\nSTATUS=listening, no connections\nMAINPID=%d",
              (int)getpid());
  int why = opt.single ? single_wait(&srv)
            : accept_loop(&srv, ls, n, on_event,
                          notify_enabled() ? NOTIFY_TICK_MS : 0);
  return shut_down(ls, n, why);
}
