#ifndef TRACERELAY_CSHIMS_H
#define TRACERELAY_CSHIMS_H
#include <sys/types.h>
#include <sys/socket.h>

/* accept4 and SOCK_NONBLOCK/SOCK_CLOEXEC need _GNU_SOURCE, which Swift's Glibc import does not set. */
int tr_accept4_nonblock(int fd, struct sockaddr *addr, socklen_t *len);
int tr_sock_nonblock(void);
int tr_sock_cloexec(void);
/* CRC32C (Castagnoli), software slicing-by-8; used for spill frame checksums. */
unsigned int tr_crc32c(unsigned int crc, const void *data, unsigned long len);
#endif
