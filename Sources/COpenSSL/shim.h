#ifndef TRACERELAY_COPENSSL_SHIM_H
#define TRACERELAY_COPENSSL_SHIM_H
/* OpenSSL 3 (Debian's libssl-dev) for the TLS module. Swift cannot call OpenSSL's function-like
   macros (SSL_CTX_set_min_proto_version, SSL_set_tlsext_host_name, SSL_OP_BIT, the typed stack
   accessors, ERR_GET_REASON), so the few the TLS engine needs are wrapped here as small static
   inline functions with tr_ names. Everything else is called directly from Swift. */
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Settings every tracerelay context shares: the lowest protocol version (TLS1_2_VERSION or
   TLS1_3_VERSION; 1.3 is preferred whenever both sides have it), no renegotiation, no
   compression, buffers released while a connection is idle. Returns 1 on success. */
static inline int tr_ssl_ctx_configure(SSL_CTX *ctx, int min_version) {
    if (SSL_CTX_set_min_proto_version(ctx, min_version) != 1) return 0;
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return 1;
}

/* Server-side ALPN: picks the first protocol of the server's list the client offers. `arg` is the
   server's list in wire format behind a 2-byte big-endian length; it must outlive the SSL_CTX's
   handshakes (the owning Swift context keeps it). No overlap: the handshake goes on without ALPN. */
static inline int tr_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                 const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl;
    const unsigned char *list = (const unsigned char *)arg;
    unsigned int len = ((unsigned int)list[0] << 8) | list[1];
    unsigned char *chosen = NULL;
    if (SSL_select_next_proto(&chosen, outlen, list + 2, len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}
static inline void tr_ssl_ctx_set_alpn_select(SSL_CTX *ctx, const unsigned char *list) {
    SSL_CTX_set_alpn_select_cb(ctx, tr_alpn_select, (void *)list);
}

/* The SNI host name a client sends. Returns 1 on success. */
static inline int tr_ssl_set_sni(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

/* The reason part of an OpenSSL error code (an SSL_R_* value, or SSL_AD_REASON_OFFSET + alert). */
static inline int tr_err_reason(unsigned long e) { return ERR_GET_REASON(e); }
/* The library an OpenSSL error code comes from (ERR_LIB_SSL, ERR_LIB_X509, …). */
static inline int tr_err_lib(unsigned long e) { return ERR_GET_LIB(e); }

/* Subject alternative names of a certificate, as an opaque list (NULL when it has none); free
   it with tr_sans_free. */
#define TR_SAN_OTHER 0
#define TR_SAN_DNS 1
#define TR_SAN_URI 2
static inline void *tr_x509_sans(X509 *cert) {
    return X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
}
static inline int tr_sans_count(void *sans) { return sk_GENERAL_NAME_num((GENERAL_NAMES *)sans); }
/* Entry i: its kind (TR_SAN_*); for DNS and URI names *data and *len point at its bytes, which
   live as long as the list. */
static inline int tr_sans_entry(void *sans, int i, const unsigned char **data, int *len) {
    const GENERAL_NAME *name = sk_GENERAL_NAME_value((GENERAL_NAMES *)sans, i);
    const ASN1_IA5STRING *s;
    int kind;
    if (name == NULL) return TR_SAN_OTHER;
    switch (name->type) {
    case GEN_DNS: s = name->d.dNSName; kind = TR_SAN_DNS; break;
    case GEN_URI: s = name->d.uniformResourceIdentifier; kind = TR_SAN_URI; break;
    default: return TR_SAN_OTHER;
    }
    *data = ASN1_STRING_get0_data(s);
    *len = ASN1_STRING_length(s);
    return kind;
}
static inline void tr_sans_free(void *sans) { GENERAL_NAMES_free((GENERAL_NAMES *)sans); }

/* The subject's (last) common name: its length with *data pointing at its bytes (owned by the
   certificate), or -1 when the subject has none. */
static inline int tr_x509_common_name(X509 *cert, const unsigned char **data) {
    X509_NAME *subject = X509_get_subject_name(cert);
    int last = -1, i = -1;
    while ((i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) >= 0) last = i;
    if (last < 0) return -1;
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, last));
    *data = ASN1_STRING_get0_data(s);
    return ASN1_STRING_length(s);
}
#endif
