#ifndef TRACERELAY_CTLSBIO_H
#define TRACERELAY_CTLSBIO_H
/* Two OpenSSL BIOs for the sans-IO TLS engine, in place of a pair of memory BIOs: the input one
   saves a copy of every byte received; the output one is copied out of once, with no
   zero-filling first.

   Input ("lent") BIO: the ciphertext read from the socket is lent for the duration of one feed
   (tr_inbio_lend) and OpenSSL reads its records straight from the caller's buffer. When the
   feed is over (tr_inbio_end_loan) whatever OpenSSL did not read is copied into the BIO's own
   buffer and read first next time. OpenSSL buffers a partial record itself, so in the common
   case nothing is kept.

   Output ("queue") BIO: ciphertext OpenSSL writes is appended to a growable buffer (not zeroed);
   the caller copies it out from tr_outbio_peek's pointer and drops it with tr_outbio_consume.

   Both are made with BIO_new and owned by the SSL after SSL_set_bio; BIO pointers are opaque
   here (struct bio_st) so Swift sees the same OpaquePointer as in COpenSSL. Not thread-safe:
   one connection's queue uses them. */
#include <stddef.h>

struct bio_st;

/* A new input BIO; NULL when out of memory. */
struct bio_st *tr_inbio_new(void);
/* Lends `len` bytes at `data` until tr_inbio_end_loan; read after any bytes kept earlier. */
void tr_inbio_lend(struct bio_st *bio, const void *data, size_t len);
/* Ends the loan: the unread rest of the lent bytes is copied into the BIO. Returns 1, or 0 when
   that copy could not be allocated (the rest is then dropped; the connection must fail). */
int tr_inbio_end_loan(struct bio_st *bio);
/* Bytes the BIO holds (kept and still lent, unread). */
size_t tr_inbio_pending(struct bio_st *bio);

/* A new output BIO; NULL when out of memory. */
struct bio_st *tr_outbio_new(void);
/* The bytes waiting to be sent: sets *data (valid until the next write or consume) and returns
   their count. */
size_t tr_outbio_peek(struct bio_st *bio, const unsigned char **data);
/* Drops the first `n` waiting bytes (n ≤ the count tr_outbio_peek returned). */
void tr_outbio_consume(struct bio_st *bio, size_t n);

#endif
