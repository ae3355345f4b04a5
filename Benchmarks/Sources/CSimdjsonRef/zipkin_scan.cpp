#include "CSimdjsonRef.h"
#include <simdjson.h>
#include <string_view>
#include <utility>

using namespace simdjson;

namespace {

// Up to 32 hex digits into (high, low); invalid digits make it fail, as our decoder does.
bool hexID(std::string_view s, uint64_t &high, uint64_t &low) {
    if (s.empty() || s.size() > 32) return false;
    high = 0;
    low = 0;
    for (char c : s) {
        uint64_t d;
        if (c >= '0' && c <= '9') d = uint64_t(c - '0');
        else if (c >= 'a' && c <= 'f') d = uint64_t(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = uint64_t(c - 'A' + 10);
        else return false;
        high = (high << 4) | (low >> 60);
        low = (low << 4) | d;
    }
    return true;
}

bool endpoint(ondemand::value v, uint64_t &sum) {
    ondemand::object obj;
    if (v.get_object().get(obj)) return false;
    for (auto f : obj) {
        ondemand::field field;
        std::string_view key;
        if (std::move(f).get(field) || field.unescaped_key().get(key)) return false;
        if (key == "port") {
            uint64_t port;
            if (field.value().get_uint64().get(port)) return false;
            sum += port;
        } else if (key == "serviceName" || key == "ipv4" || key == "ipv6") {
            std::string_view s;
            if (field.value().get_string().get(s)) return false;
            sum += s.size();
        }
    }
    return true;
}

bool span(ondemand::object obj, uint64_t &sum) {
    for (auto f : obj) {
        ondemand::field field;
        std::string_view key;
        if (std::move(f).get(field) || field.unescaped_key().get(key)) return false;
        ondemand::value v = field.value();
        if (key == "traceId" || key == "id" || key == "parentId") {
            std::string_view s;
            uint64_t high, low;
            if (v.get_string().get(s) || !hexID(s, high, low)) return false;
            sum += high ^ low;
        } else if (key == "name" || key == "kind") {
            std::string_view s;
            if (v.get_string().get(s)) return false;
            sum += s.size();
        } else if (key == "timestamp" || key == "duration") {
            uint64_t x;
            if (v.get_uint64().get(x)) return false;
            sum += x;
        } else if (key == "localEndpoint" || key == "remoteEndpoint") {
            if (!endpoint(v, sum)) return false;
        } else if (key == "tags") {
            ondemand::object tags;
            if (v.get_object().get(tags)) return false;
            for (auto t : tags) {
                ondemand::field tag;
                std::string_view k, s;
                if (std::move(t).get(tag) || tag.unescaped_key().get(k) || tag.value().get_string().get(s)) return false;
                sum += k.size() + s.size();
            }
        } else if (key == "annotations") {
            ondemand::array list;
            if (v.get_array().get(list)) return false;
            for (auto a : list) {
                ondemand::object ann;
                if (a.get_object().get(ann)) return false;
                uint64_t ts;
                std::string_view value;
                if (ann["timestamp"].get_uint64().get(ts) || ann["value"].get_string().get(value)) return false;
                sum += ts + value.size();
            }
        } else if (key == "debug" || key == "shared") {
            bool b;
            if (v.get_bool().get(b)) return false;
            sum += b;
        }
    }
    return true;
}

} // namespace

extern "C" size_t tr_simdjson_padding(void) { return SIMDJSON_PADDING; }

extern "C" int64_t tr_simdjson_zipkin_scan(const uint8_t *buf, size_t len, size_t capacity, uint64_t *checksum) {
    static thread_local ondemand::parser parser;
    padded_string_view json(reinterpret_cast<const char *>(buf), len, capacity);
    ondemand::document doc;
    ondemand::array spans;
    if (parser.iterate(json).get(doc) || doc.get_array().get(spans)) return -1;
    int64_t n = 0;
    uint64_t sum = 0;
    for (auto element : spans) {
        ondemand::object obj;
        if (element.get_object().get(obj) || !span(obj, sum)) return -1;
        n += 1;
    }
    *checksum = sum;
    return n;
}
