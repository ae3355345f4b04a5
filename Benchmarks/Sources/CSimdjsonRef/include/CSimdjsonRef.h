// A C-callable reference scan of Zipkin v2 JSON with simdjson's On-Demand API (Debian's
// libsimdjson-dev), so the Zipkin JSON decoder's speed can be given as a ratio to the fastest
// JSON parser in the same run. Calling simdjson's C++ API from Swift directly does not work well
// (../shared/DESIGN.md), hence this shim.
#ifndef CSIMDJSONREF_H
#define CSIMDJSONREF_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Bytes of readable memory simdjson needs after the document (SIMDJSON_PADDING).
size_t tr_simdjson_padding(void);

/// Parses `len` bytes at `buf` (with `capacity - len` ≥ tr_simdjson_padding() readable bytes
/// after them) as a Zipkin v2 JSON array and visits every span's fields the way a decoder must:
/// hex ids converted to integers, names, kind, timestamps, endpoints (service, ip, port),
/// every tag key and value, annotations, flags. Returns the span count, or -1 if the text is
/// not a well-formed array of span objects. `*checksum` gets a sum over what was read (so the
/// compiler cannot drop the work). Not thread-safe across threads sharing nothing: one parser
/// per thread, reused.
int64_t tr_simdjson_zipkin_scan(const uint8_t *buf, size_t len, size_t capacity, uint64_t *checksum);

#ifdef __cplusplus
}
#endif
#endif
