#ifndef TRACERELAY_CNGHTTP2_SHIM_H
#define TRACERELAY_CNGHTTP2_SHIM_H
#include <nghttp2/nghttp2.h>

/* Macros Swift cannot import, exposed as constants. */
static inline const char *tr_nghttp2_client_magic(void) { return NGHTTP2_CLIENT_MAGIC; }
static inline unsigned long tr_nghttp2_client_magic_len(void) { return NGHTTP2_CLIENT_MAGIC_LEN; }
static inline int tr_nghttp2_version_num(void) { return NGHTTP2_VERSION_NUM; }
#endif
