/* Fixture for the TLS unit tests: credentials made by tests/lib/tls.sh
 * at start-up (certtool, psktool) in a temporary directory, and real
 * handshakes between our server and client over a socketpair, one end per
 * thread.  Every blocking call runs under a deadline.
 *
 * Credential names under P(): x509 (CA, server and client1 certificates,
 * empty CRL), other (an independent CA with the same), cacert (x509's CA
 * only), wrongcli (trusts x509's CA, client certificate from other),
 * expired, rev + revcli (a CA whose CRL revokes revcli's certificate),
 * psk (alice, bob), wrongpsk (alice, another key), carolpsk (carol),
 * badkey (garbage server key), halfpair (client certificate, no key).
 */
#ifndef SNBD_TLS_FIXTURE_H
#define SNBD_TLS_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>

#include "tls.h"
#include "transport.h"

#define SEC 1000000000LL
#define TEST_DEADLINE (10 * SEC)   /* safety net for every handshake/recv */

/* The path of sub in the credential directory (a few rotating buffers:
 * enough for the arguments of one call). */
const char *P(const char *sub);
void write_file(const char *path, const char *text);

/* Load credentials from P(...) names, failing the test on error. */
struct tls_creds *server_creds(const char *certs, const char *psk,
                               bool verify);
struct tls_creds *client_creds_full(const char *certs, const char *psk,
                                    const char *user, bool verify,
                                    const char *priority);
struct tls_creds *client_creds(const char *certs, bool verify);
struct tls_creds *client_psk(const char *psk, const char *user);

/* One end of a handshake. */
struct side {
  bool server;
  struct tls_creds *creds;
  int fd;
  const char *hostname;
  const char *resume_key;          /* client: tls_client_handshake's */
  int64_t deadline;                /* 0: now + TEST_DEADLINE */
  struct transport *t;             /* result, NULL on failure */
  struct tls_peer peer;
  int err;
  char msg[1024];
};

/* Runs s's handshake on s->fd (closed on failure); a pthread function. */
void *handshake_thread(void *arg);
/* Both handshakes over a new socketpair; true if both succeeded. */
bool run_pair(struct tls_creds *sc, struct tls_creds *cc,
              const char *hostname, struct side *srv, struct side *cli);
/* The same, the client caching its session under key (resumption). */
bool run_pair_key(struct tls_creds *sc, struct tls_creds *cc,
                  const char *hostname, const char *key, struct side *srv,
                  struct side *cli);
void close_pair(struct side *srv, struct side *cli);
/* Both ends fail. */
void expect_refused(struct tls_creds *sc, struct tls_creds *cc,
                    const char *hostname, struct side *srv, struct side *cli);
/* The server refuses the client (the client may learn on its 1st read). */
void expect_server_refused(struct tls_creds *sc, struct tls_creds *cc,
                           struct side *srv, struct side *cli);
/* TLS 1.3 with an AES-GCM cipher. */
void assert_modern(const struct tls_peer *p);
/* A few bytes each way. */
void small_roundtrip(struct transport *a, struct transport *b);

/* The source tree (for tests/lib/tls.sh). */
const char *tls_fixture_src(void);

/* main(): makes the credentials (exit 77 without certtool/psktool), runs
 * the tests, removes the directory. */
struct CMUnitTest;
int tls_fixture_main(const char *name, const struct CMUnitTest *tests,
                     size_t n);

#endif
