#ifndef TRACERELAY_CSHIMS_H
#define TRACERELAY_CSHIMS_H
#include <sys/types.h>
#include <sys/socket.h>

/* accept4 and SOCK_NONBLOCK/SOCK_CLOEXEC need _GNU_SOURCE, which Swift's Glibc import does not set. */
int tr_accept4_nonblock(int fd, struct sockaddr *addr, socklen_t *len);
int tr_sock_nonblock(void);
int tr_sock_cloexec(void);
/* epoll for the transport's per-loop poller (Swift cannot use the packed struct epoll_event
   portably). Each returns what the syscall returns (-1 with errno set on failure). */
int tr_epoll_create(void);
/* Registers fd edge-triggered for input, output and peer half-close; `data` comes back with its events. */
int tr_epoll_add(int epfd, int fd, unsigned long long data);
int tr_epoll_del(int epfd, int fd);
/* epoll_wait into two parallel arrays; events[i] is a TR_POLL_* mask. */
int tr_epoll_wait(int epfd, unsigned long long *datas, unsigned int *events, int max, int timeout_ms);
#define TR_POLL_READABLE 1u /* EPOLLIN, EPOLLRDHUP, EPOLLHUP or EPOLLERR: read to find out */
#define TR_POLL_WRITABLE 2u /* EPOLLOUT, EPOLLHUP or EPOLLERR: send to find out */
#define TR_POLL_HANGUP 4u   /* EPOLLRDHUP, EPOLLHUP or EPOLLERR: read until EOF/error, not just a short read */
/* CRC32C (Castagnoli) with the CPU's CRC32 instruction, for spill frame checksums. Call only when
   tr_cpu_has_crc32c() says the CPU has it (SSE4.2); Buffering's CRC32C has the table version. */
int tr_cpu_has_crc32c(void);
unsigned int tr_crc32c_hw(unsigned int crc, const void *data, unsigned long len);
/* glibc malloc_trim(0): returns the free pages of every arena to the system (malloc.h is not in
   Swift's Glibc module). Returns 1 if memory was released. */
int tr_malloc_trim(void);
#endif
