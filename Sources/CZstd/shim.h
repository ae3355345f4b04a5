#ifndef TRACERELAY_CZSTD_SHIM_H
#define TRACERELAY_CZSTD_SHIM_H
#include <zstd.h>
#include <zstd_errors.h>

/* ZSTD_CONTENTSIZE_* are macros of unsigned long long constants Swift does not import. */
static inline unsigned long long tr_zstd_contentsize_unknown(void) { return ZSTD_CONTENTSIZE_UNKNOWN; }
static inline unsigned long long tr_zstd_contentsize_error(void) { return ZSTD_CONTENTSIZE_ERROR; }
#endif
