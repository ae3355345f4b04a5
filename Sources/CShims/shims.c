#define _GNU_SOURCE
#include "CShims.h"
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>

int tr_accept4_nonblock(int fd, struct sockaddr *addr, socklen_t *len) {
    return accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}
int tr_sock_nonblock(void) { return SOCK_NONBLOCK; }
int tr_sock_cloexec(void) { return SOCK_CLOEXEC; }

int tr_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int tr_epoll_add(int epfd, int fd, unsigned long long data) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = data;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int tr_epoll_del(int epfd, int fd) {
    struct epoll_event ev; /* non-NULL for kernels before 2.6.9 */
    memset(&ev, 0, sizeof ev);
    return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &ev);
}

int tr_epoll_wait(int epfd, unsigned long long *datas, unsigned int *events, int max, int timeout_ms) {
    struct epoll_event evs[128];
    if (max > 128) max = 128;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        unsigned int e = evs[i].events, m = 0;
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) m |= TR_POLL_READABLE;
        if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) m |= TR_POLL_WRITABLE;
        if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) m |= TR_POLL_HANGUP;
        datas[i] = evs[i].data.u64;
        events[i] = m;
    }
    return n;
}

static uint32_t crc_table[8][256];
static int crc_ready = 0;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = crc_table[0][i];
        for (int t = 1; t < 8; t++) { c = crc_table[0][c & 0xff] ^ (c >> 8); crc_table[t][i] = c; }
    }
    __atomic_store_n(&crc_ready, 1, __ATOMIC_RELEASE);
}

#if defined(__x86_64__)
/* SSE4.2 has a CRC32C instruction: ~4x the table version (spill replay checks every frame). */
__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t c, const unsigned char *p, unsigned long len) {
    while (len && ((uintptr_t)p & 7)) { c = __builtin_ia32_crc32qi(c, *p++); len--; }
    uint64_t c64 = c;
    while (len >= 8) { uint64_t w; memcpy(&w, p, 8); c64 = __builtin_ia32_crc32di(c64, w); p += 8; len -= 8; }
    c = (uint32_t)c64;
    while (len--) c = __builtin_ia32_crc32qi(c, *p++);
    return c;
}
#endif

unsigned int tr_crc32c(unsigned int crc, const void *data, unsigned long len) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return ~crc32c_sse42(~crc, (const unsigned char *)data, len);
#endif
    if (!__atomic_load_n(&crc_ready, __ATOMIC_ACQUIRE)) crc_init();
    const unsigned char *p = (const unsigned char *)data;
    uint32_t c = ~crc;
    while (len && ((uintptr_t)p & 7)) { c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8); len--; }
    while (len >= 8) {
        uint64_t w; memcpy(&w, p, 8);
        w ^= c;
        c = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^ crc_table[5][(w >> 16) & 0xff] ^
            crc_table[4][(w >> 24) & 0xff] ^ crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
            crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][(w >> 56) & 0xff];
        p += 8; len -= 8;
    }
    while (len--) c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

#include <malloc.h>
int tr_malloc_trim(void) { return malloc_trim(0); }
