#include "CTLSBIO.h"
#include <openssl/bio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A byte buffer: bytes [off, len) of data are unread. */
typedef struct {
    unsigned char *data;
    size_t off, len, cap;
} bytes_t;

/* Room for `more` bytes after the unread ones: moves them to the front first, then grows by
   doubling. Returns 0 when out of memory. */
static int bytes_reserve(bytes_t *b, size_t more) {
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->cap - b->len >= more) return 1;
    if (more > (size_t)-1 / 2 - b->len) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < more) cap *= 2;
    unsigned char *p = realloc(b->data, cap);
    if (!p) return 0;
    b->data = p;
    b->cap = cap;
    return 1;
}

/* Marks everything read; gives back a buffer larger than any steady use (a burst is over). The
   HTTPS client encrypts up to 1 MiB at a time (ClientConnection.tlsChunk) and drains it at once:
   its buffer must survive that, or every batch would grow it anew (reallocs, fresh pages). */
#define BYTES_KEEP_MAX (4u * 1024 * 1024)
static void bytes_reset_if_empty(bytes_t *b) {
    if (b->off < b->len) return;
    b->off = b->len = 0;
    if (b->cap > BYTES_KEEP_MAX) {
        free(b->data);
        b->data = NULL;
        b->cap = 0;
    }
}

/* ---- input BIO ---------------------------------------------------------------------------- */

typedef struct {
    bytes_t kept;
    const unsigned char *lent;
    size_t lent_off, lent_len;
} inbio_t;

static int inbio_read_ex(BIO *bio, char *out, size_t outl, size_t *readbytes) {
    inbio_t *s = BIO_get_data(bio);
    size_t n = 0;
    BIO_clear_retry_flags(bio);
    size_t k = s->kept.len - s->kept.off;
    if (k > 0) {
        if (k > outl) k = outl;
        memcpy(out, s->kept.data + s->kept.off, k);
        s->kept.off += k;
        n = k;
        bytes_reset_if_empty(&s->kept);
    }
    size_t l = s->lent_len - s->lent_off;
    if (n < outl && l > 0) {
        if (l > outl - n) l = outl - n;
        memcpy(out + n, s->lent + s->lent_off, l);
        s->lent_off += l;
        n += l;
    }
    *readbytes = n;
    if (n == 0) {
        BIO_set_retry_read(bio); /* "would block": more comes with the next feed */
        return 0;
    }
    return 1;
}

static long inbio_ctrl(BIO *bio, int cmd, long num, void *ptr) {
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_PENDING: return (long)tr_inbio_pending(bio);
    case BIO_CTRL_FLUSH: return 1;
    default: return 0;
    }
}

static int inbio_create(BIO *bio) {
    inbio_t *s = calloc(1, sizeof *s);
    if (!s) return 0;
    BIO_set_data(bio, s);
    BIO_set_init(bio, 1);
    return 1;
}

static int inbio_destroy(BIO *bio) {
    inbio_t *s = BIO_get_data(bio);
    if (s) {
        free(s->kept.data);
        free(s);
    }
    BIO_set_data(bio, NULL);
    BIO_set_init(bio, 0);
    return 1;
}

/* ---- output BIO --------------------------------------------------------------------------- */

static int outbio_write_ex(BIO *bio, const char *in, size_t inl, size_t *written) {
    bytes_t *b = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (!bytes_reserve(b, inl)) {
        *written = 0;
        return 0; /* no retry flag: a hard error, SSL_write fails */
    }
    memcpy(b->data + b->len, in, inl);
    b->len += inl;
    *written = inl;
    return 1;
}

static long outbio_ctrl(BIO *bio, int cmd, long num, void *ptr) {
    (void)num;
    (void)ptr;
    bytes_t *b = BIO_get_data(bio);
    switch (cmd) {
    case BIO_CTRL_PENDING:
    case BIO_CTRL_WPENDING: return (long)(b->len - b->off);
    case BIO_CTRL_FLUSH: return 1;
    default: return 0;
    }
}

static int outbio_create(BIO *bio) {
    bytes_t *b = calloc(1, sizeof *b);
    if (!b) return 0;
    BIO_set_data(bio, b);
    BIO_set_init(bio, 1);
    return 1;
}

static int outbio_destroy(BIO *bio) {
    bytes_t *b = BIO_get_data(bio);
    if (b) {
        free(b->data);
        free(b);
    }
    BIO_set_data(bio, NULL);
    BIO_set_init(bio, 0);
    return 1;
}

/* ---- methods, made once ------------------------------------------------------------------- */

static BIO_METHOD *in_method, *out_method;
static pthread_once_t methods_once = PTHREAD_ONCE_INIT;

static void make_methods(void) {
    int in_type = BIO_get_new_index(), out_type = BIO_get_new_index();
    if (in_type == -1 || out_type == -1) return;
    BIO_METHOD *in = BIO_meth_new(in_type | BIO_TYPE_SOURCE_SINK, "tracerelay lent input");
    BIO_METHOD *out = BIO_meth_new(out_type | BIO_TYPE_SOURCE_SINK, "tracerelay output queue");
    if (!in || !out) {
        BIO_meth_free(in);
        BIO_meth_free(out);
        return;
    }
    BIO_meth_set_read_ex(in, inbio_read_ex);
    BIO_meth_set_ctrl(in, inbio_ctrl);
    BIO_meth_set_create(in, inbio_create);
    BIO_meth_set_destroy(in, inbio_destroy);
    BIO_meth_set_write_ex(out, outbio_write_ex);
    BIO_meth_set_ctrl(out, outbio_ctrl);
    BIO_meth_set_create(out, outbio_create);
    BIO_meth_set_destroy(out, outbio_destroy);
    in_method = in;
    out_method = out;
}

struct bio_st *tr_inbio_new(void) {
    pthread_once(&methods_once, make_methods);
    return in_method ? BIO_new(in_method) : NULL;
}

void tr_inbio_lend(struct bio_st *bio, const void *data, size_t len) {
    inbio_t *s = BIO_get_data(bio);
    s->lent = data;
    s->lent_off = 0;
    s->lent_len = data ? len : 0;
}

int tr_inbio_end_loan(struct bio_st *bio) {
    inbio_t *s = BIO_get_data(bio);
    size_t rest = s->lent_len - s->lent_off;
    int ok = 1;
    if (rest > 0) {
        if (bytes_reserve(&s->kept, rest)) {
            memcpy(s->kept.data + s->kept.len, s->lent + s->lent_off, rest);
            s->kept.len += rest;
        } else {
            ok = 0;
        }
    }
    s->lent = NULL;
    s->lent_off = s->lent_len = 0;
    return ok;
}

size_t tr_inbio_pending(struct bio_st *bio) {
    inbio_t *s = BIO_get_data(bio);
    return (s->kept.len - s->kept.off) + (s->lent_len - s->lent_off);
}

struct bio_st *tr_outbio_new(void) {
    pthread_once(&methods_once, make_methods);
    return out_method ? BIO_new(out_method) : NULL;
}

size_t tr_outbio_peek(struct bio_st *bio, const unsigned char **data) {
    bytes_t *b = BIO_get_data(bio);
    *data = b->data ? b->data + b->off : NULL;
    return b->len - b->off;
}

void tr_outbio_consume(struct bio_st *bio, size_t n) {
    bytes_t *b = BIO_get_data(bio);
    size_t waiting = b->len - b->off;
    b->off += n < waiting ? n : waiting;
    bytes_reset_if_empty(b);
}
