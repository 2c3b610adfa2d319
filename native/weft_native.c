/*
 * weft_native: the few Linux syscalls weft's data path needs and Node does not offer.
 *
 * Rules this file keeps (see src/native/addon.ts for the JS side):
 *  - Syscalls only. No protocol parsing, no crypto, no policy: those live in TypeScript.
 *  - Batches. JS allocates one big buffer plus typed arrays of lengths/offsets/addresses once
 *    and hands them in; one N-API crossing moves many frames. Nothing here allocates per packet.
 *  - Errors are JS Errors whose `code` is the errno name (EPERM, EBUSY, ...) and whose message
 *    names the syscall and the device or address, so a log line is enough to act on.
 *
 * Later: IFF_VNET_HDR offloads (TUNSETVNETHDRSZ, TUNSETOFFLOAD) belong next to tapOpen; only the
 * flag itself is wired today.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

/* recvmmsg/sendmmsg headers live on the stack in chunks of this many: big enough that a busy
 * socket is drained in a few syscalls, small enough (~6 KiB) to need no heap and no global state
 * (worker threads may each load this module). */
#define CHUNK 64

/* UDP segmentation offload (Linux 4.18) and receive coalescing (5.0), from linux/udp.h, which
 * older libc headers lack. One send of many equal-size datagrams crosses the stack once as a
 * single GSO packet; one receive returns many coalesced datagrams. */
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
/* The kernel's cap on segments in one GSO send (UDP_MAX_SEGMENTS in 5.x). */
#define GSO_MAX_SEGMENTS 64
/* Largest UDP payload of one GSO send: the IP length field still bounds the whole. */
#define GSO_MAX_BYTES 65000

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                      */

static const char *errno_name(int err, char *buf, size_t len) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *name = strerrorname_np(err); /* knows every errno, e.g. EBADFD, which libuv lacks */
  if (name != NULL) return name;
#endif
  return uv_err_name_r(-err, buf, len); /* libuv codes are negated errnos on Linux */
}

/* Throws Error("<syscall>(<what>): <strerror>[ — hint]") with code/errno/syscall set like Node's
 * own system errors. Always returns NULL so callers can `return throw_errno(...)`. */
static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *what,
                              const char *hint) {
  char msg[512], namebuf[64];
  snprintf(msg, sizeof msg, "%s(%s): %s%s%s", syscall, what, strerror(err), hint ? " — " : "",
           hint ? hint : "");
  napi_value code, message, error, errnum, sc;
  napi_create_string_utf8(env, errno_name(err, namebuf, sizeof namebuf), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error); /* sets error.code */
  napi_create_int32(env, -err, &errnum);         /* Node convention: negative errno */
  napi_set_named_property(env, error, "errno", errnum);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sc);
  napi_set_named_property(env, error, "syscall", sc);
  napi_throw(env, error);
  return NULL;
}

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

static napi_value throw_range(napi_env env, const char *msg) {
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
  return NULL;
}

/* Errors that belong to one destination (routing, firewall, ICMP feedback about an earlier
 * datagram), not to the socket. Sending skips that datagram; receiving just retries, because
 * reporting the error has already cleared it from the socket. */
static bool is_peer_error(int err) {
  switch (err) {
  case ECONNREFUSED:
  case EHOSTUNREACH:
  case ENETUNREACH:
  case EHOSTDOWN:
  case ENETDOWN:
  case ENONET:
  case EPERM:  /* netfilter said no */
  case EACCES: /* e.g. broadcast destination without SO_BROADCAST */
  case EPROTO:
  case ENOPROTOOPT:
  case EMSGSIZE:
  case ETIMEDOUT:
    return true;
  default:
    return false;
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Network namespaces: setns() moves only the calling thread, and it must always move back.  */

/* Moves this thread into the network namespace at `path`; *home gets an fd of the one it
 * left, for leave_netns. Returns false with a JS exception pending (and nothing moved). */
static bool enter_netns(napi_env env, const char *path, int *home) {
  *home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (*home < 0) {
    throw_errno(env, errno, "open", "/proc/thread-self/ns/net", NULL);
    return false;
  }
  int target = open(path, O_RDONLY | O_CLOEXEC);
  int err = 0;
  const char *failed = NULL;
  if (target < 0) {
    err = errno;
    failed = "open";
  } else if (setns(target, CLONE_NEWNET) < 0) {
    err = errno;
    failed = "setns";
  }
  if (target >= 0) close(target);
  if (failed != NULL) {
    close(*home);
    *home = -1;
    throw_errno(env, err, failed, path, NULL);
    return false;
  }
  return true;
}

/* Moves back to the namespace enter_netns left (no-op for home < 0). Staying in the other
 * namespace would make every socket weft opens later land there: silent misrouting, worse
 * than crashing, so a failed return is fatal. */
static void leave_netns(int home, const char *who) {
  if (home < 0) return;
  if (setns(home, CLONE_NEWNET) < 0)
    napi_fatal_error(who, NAPI_AUTO_LENGTH, "cannot setns() back to the original network namespace",
                     NAPI_AUTO_LENGTH);
  close(home);
}

/* ------------------------------------------------------------------------------------------ */
/* Argument helpers: each returns false with a JS exception pending.                          */

static bool arg_i32(napi_env env, napi_value v, const char *name, int32_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be a number", name);
    throw_type(env, msg);
    return false;
  }
  napi_get_value_int32(env, v, out);
  return true;
}

/* A typed array of the given element type; `n` is its element count, `data` already points at
 * its first element (N-API applies byteOffset, which matters for pooled small Buffers). */
static bool arg_typed(napi_env env, napi_value v, const char *name, napi_typedarray_type want,
                      const char *want_name, void **data, size_t *n) {
  bool is = false;
  napi_typedarray_type type;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, v, &type, n, data, NULL, NULL) != napi_ok || type != want) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be a %s", name, want_name);
    throw_type(env, msg);
    return false;
  }
  return true;
}

#define ARG_BYTES(v, name, p, n) arg_typed(env, v, name, napi_uint8_array, "Buffer", (void **)(p), n)
#define ARG_I32S(v, name, p, n) arg_typed(env, v, name, napi_int32_array, "Int32Array", (void **)(p), n)
#define ARG_U32S(v, name, p, n) arg_typed(env, v, name, napi_uint32_array, "Uint32Array", (void **)(p), n)

/* Copies a JS string into buf; false (exception pending) if it is not a string or does not fit. */
static bool arg_str(napi_env env, napi_value v, const char *name, char *buf, size_t cap) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be a string", name);
    throw_type(env, msg);
    return false;
  }
  if (len == 0 || len >= cap) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be 1..%zu bytes long", name, cap - 1);
    throw_range(env, msg);
    return false;
  }
  napi_get_value_string_utf8(env, v, buf, cap, &len);
  return true;
}

/* An optional string property of an options object: `buf` is left as it is when absent. */
static bool opt_str(napi_env env, napi_value obj, const char *name, char *buf, size_t cap) {
  napi_value v;
  napi_valuetype vt;
  napi_get_named_property(env, obj, name, &v);
  napi_typeof(env, v, &vt);
  return vt == napi_undefined || arg_str(env, v, name, buf, cap);
}

static napi_value make_i32(napi_env env, int32_t x) {
  napi_value v;
  napi_create_int32(env, x, &v);
  return v;
}

/* ------------------------------------------------------------------------------------------ */
/* TAP                                                                                         */

/* tapOpen(name, { vnetHdr?, netnsPath?, persist? }) -> { fd, name } */
static napi_value tap_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) return throw_type(env, "tapOpen(name, opts?) needs a name");

  char name[IFNAMSIZ], netns[4096] = "";
  bool vnet_hdr = false, persist = false;
  if (!arg_str(env, argv[0], "name", name, sizeof name)) return NULL;
  napi_valuetype t = napi_undefined;
  if (argc >= 2) napi_typeof(env, argv[1], &t);
  if (t == napi_object) {
    napi_value v;
    napi_valuetype vt;
    napi_get_named_property(env, argv[1], "vnetHdr", &v);
    napi_typeof(env, v, &vt);
    if (vt != napi_undefined) napi_get_value_bool(env, v, &vnet_hdr); /* non-bool stays false */
    napi_get_named_property(env, argv[1], "persist", &v);
    napi_typeof(env, v, &vt);
    if (vt != napi_undefined) napi_get_value_bool(env, v, &persist);
    if (!opt_str(env, argv[1], "netnsPath", netns, sizeof netns)) return NULL;
  } else if (t != napi_undefined && t != napi_null) {
    return throw_type(env, "opts must be an object");
  }

  /* Names the device in messages, with its namespace when that is not ours. */
  char what[IFNAMSIZ + sizeof netns + 8];
  snprintf(what, sizeof what, netns[0] ? "%s in %s" : "%s", name, netns);

  /* The tun driver binds the device lookup to the network namespace of whoever *opened*
   * /dev/net/tun, so both open() and TUNSETIFF must happen inside the target namespace. setns()
   * only moves this thread; we move back before any JS runs again. */
  int home = -1;
  if (netns[0] && !enter_netns(env, netns, &home)) return NULL;

  const char *failed = NULL;
  int err = 0;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    err = errno;
    failed = "open";
  } else {
    /* IFF_NO_PI: frames start at the Ethernet header. Attaching to a persistent TAP made for
     * another uid works unprivileged as long as we ask for the same mode (TAP, single queue). */
    memcpy(ifr.ifr_name, name, sizeof ifr.ifr_name);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
      err = errno;
      failed = "ioctl TUNSETIFF";
      close(fd);
      fd = -1;
    } else if (persist && ioctl(fd, TUNSETPERSIST, 1) < 0) {
      /* Persistent: the device (and its addresses) outlives this fd, so an endpoint keeps its
       * interface while weft restarts. */
      err = errno;
      failed = "ioctl TUNSETPERSIST";
      close(fd);
      fd = -1;
    }
  }

  leave_netns(home, "weft_native tapOpen");

  if (failed != NULL) {
    const char *hint = NULL;
    if (strcmp(failed, "open") == 0) return throw_errno(env, err, failed, "/dev/net/tun", NULL);
    if (err == EPERM)
      hint = "the TAP must already exist and belong to this user or group "
             "(ip tuntap add dev NAME mode tap user U), unless the caller has CAP_NET_ADMIN";
    else if (err == EBUSY)
      hint = "another process already has this TAP open";
    else if (err == EINVAL)
      hint = "a device of that name exists but is not a single-queue TAP";
    return throw_errno(env, err, failed, what, hint);
  }

  napi_value result, vname;
  napi_create_object(env, &result);
  napi_set_named_property(env, result, "fd", make_i32(env, fd));
  /* The kernel writes back the final name (it expands a "%d" template). */
  napi_create_string_utf8(env, ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ), &vname);
  napi_set_named_property(env, result, "name", vname);
  return result;
}

/* readFrames(fd, buf, slotSize, lengths, maxFrames) -> count */
static napi_value read_frames(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd, slot, max;
  uint8_t *buf;
  int32_t *lengths;
  size_t buflen, nlen;
  if (argc < 5) return throw_type(env, "readFrames(fd, buf, slotSize, lengths, maxFrames)");
  if (!arg_i32(env, argv[0], "fd", &fd) || !ARG_BYTES(argv[1], "buf", &buf, &buflen) ||
      !arg_i32(env, argv[2], "slotSize", &slot) || !ARG_I32S(argv[3], "lengths", &lengths, &nlen) ||
      !arg_i32(env, argv[4], "maxFrames", &max))
    return NULL;
  if (slot <= 0 || max < 0 || (size_t)max > nlen || (size_t)max * (size_t)slot > buflen)
    return throw_range(env, "readFrames: need slotSize > 0, maxFrames <= lengths.length and "
                            "maxFrames * slotSize <= buf.length");

  /* A TAP hands out one frame per read(); there is no batched read for character devices.
   * The slot should hold a whole frame (MTU + Ethernet header [+ VLAN tag] [+ vnet header]):
   * the driver cuts a longer frame to the slot and read() returns slotSize, so JS treats a
   * frame that exactly fills its slot as oversized. */
  int n = 0;
  while (n < max) {
    ssize_t r = read(fd, buf + (size_t)n * (size_t)slot, (size_t)slot);
    if (r >= 0) {
      lengths[n++] = (int32_t)r;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) break;
    /* Keep frames already taken from the kernel; a persistent error comes back next call. */
    if (n > 0) break;
    char what[32];
    snprintf(what, sizeof what, "fd %d", fd);
    return throw_errno(env, errno, "read", what, NULL);
  }
  return make_i32(env, n);
}

/* Checks that every [offsets[i], offsets[i]+lengths[i]) lies inside the buffer, before any
 * syscall, so a bad batch fails whole instead of half-sent. */
static bool check_spans(napi_env env, const char *fn, size_t buflen, const int32_t *offsets,
                        const int32_t *lengths, int32_t count) {
  for (int32_t i = 0; i < count; i++) {
    if (offsets[i] < 0 || lengths[i] < 0 || (size_t)offsets[i] + (size_t)lengths[i] > buflen) {
      char msg[160];
      snprintf(msg, sizeof msg, "%s: item %d (offset %d, length %d) is outside buf (%zu bytes)",
               fn, i, offsets[i], lengths[i], buflen);
      throw_range(env, msg);
      return false;
    }
  }
  return true;
}

/* writeFrames(fd, buf, offsets, lengths, count) -> written */
static napi_value write_frames(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd, count;
  uint8_t *buf;
  int32_t *offsets, *lengths;
  size_t buflen, noff, nlen;
  if (argc < 5) return throw_type(env, "writeFrames(fd, buf, offsets, lengths, count)");
  if (!arg_i32(env, argv[0], "fd", &fd) || !ARG_BYTES(argv[1], "buf", &buf, &buflen) ||
      !ARG_I32S(argv[2], "offsets", &offsets, &noff) ||
      !ARG_I32S(argv[3], "lengths", &lengths, &nlen) || !arg_i32(env, argv[4], "count", &count))
    return NULL;
  if (count < 0 || (size_t)count > noff || (size_t)count > nlen)
    return throw_range(env, "writeFrames: need 0 <= count <= offsets.length, lengths.length");
  if (!check_spans(env, "writeFrames", buflen, offsets, lengths, count)) return NULL;

  int n = 0;
  while (n < count) {
    ssize_t r = write(fd, buf + offsets[n], (size_t)lengths[n]);
    if (r >= 0) {
      n++;
      continue;
    }
    if (errno == EINTR) continue;
    /* Queue full, or (EIO) the interface is down / has no carrier: every further write would
     * fail the same way, so stop; the caller counts the rest as dropped. */
    if (errno == EAGAIN || errno == ENOBUFS || errno == EIO) break;
    char what[32];
    snprintf(what, sizeof what, "fd %d", fd);
    return throw_errno(env, errno, "write", what, NULL);
  }
  return make_i32(env, n);
}

/* ------------------------------------------------------------------------------------------ */
/* UDP                                                                                         */

static void set_buf(int fd, int force_opt, int opt, int size) {
  if (size <= 0) return;
  /* *FORCE ignores net.core.[rw]mem_max but needs CAP_NET_ADMIN; without it, the plain option
   * still gets up to the sysctl limit. Either way a smaller buffer is not worth failing for. */
  if (setsockopt(fd, SOL_SOCKET, force_opt, &size, sizeof size) < 0)
    (void)setsockopt(fd, SOL_SOCKET, opt, &size, sizeof size);
}

/* udpOpen(ip, port, { rcvbuf?, sndbuf? }) -> fd */
static napi_value udp_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char ip[INET_ADDRSTRLEN + 1];
  int32_t port, rcvbuf = 0, sndbuf = 0;
  bool gro = false;
  if (argc < 2) return throw_type(env, "udpOpen(ip, port, opts?)");
  if (!arg_str(env, argv[0], "ip", ip, sizeof ip) || !arg_i32(env, argv[1], "port", &port))
    return NULL;
  if (port < 0 || port > 65535) return throw_range(env, "udpOpen: port must be 0..65535");
  napi_valuetype t = napi_undefined;
  if (argc >= 3) napi_typeof(env, argv[2], &t);
  if (t == napi_object) {
    napi_value v;
    napi_valuetype vt;
    napi_get_named_property(env, argv[2], "rcvbuf", &v);
    napi_typeof(env, v, &vt);
    if (vt != napi_undefined && !arg_i32(env, v, "rcvbuf", &rcvbuf)) return NULL;
    napi_get_named_property(env, argv[2], "sndbuf", &v);
    napi_typeof(env, v, &vt);
    if (vt != napi_undefined && !arg_i32(env, v, "sndbuf", &sndbuf)) return NULL;
    napi_get_named_property(env, argv[2], "gro", &v);
    napi_typeof(env, v, &vt);
    if (vt == napi_boolean) napi_get_value_bool(env, v, &gro);
  } else if (t != napi_undefined && t != napi_null) {
    return throw_type(env, "opts must be an object");
  }

  char what[INET_ADDRSTRLEN + 8];
  snprintf(what, sizeof what, "%s:%d", ip, port);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
    return throw_errno(env, EINVAL, "inet_pton", ip, "not a dotted-quad IPv4 address");

  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket", what, NULL);
  /* Never set DF: the overlay handles its own MTU, and the kernel's PMTU discovery would only
   * turn oversized datagrams into EMSGSIZE here. */
  int pmtu = IP_PMTUDISC_DONT;
  if (setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "setsockopt IP_MTU_DISCOVER", what, NULL);
  }
  set_buf(fd, SO_RCVBUFFORCE, SO_RCVBUF, rcvbuf);
  set_buf(fd, SO_SNDBUFFORCE, SO_SNDBUF, sndbuf);
  if (gro) {
    /* Best effort: without it (kernel < 5.0) datagrams simply arrive one by one. */
    int one = 1;
    (void)setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one);
  }
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "bind", what,
                       err == EADDRINUSE ? "another socket already uses this address and port"
                                         : NULL);
  }
  return make_i32(env, fd);
}

/* udpLocalPort(fd) -> port */
static napi_value udp_local_port(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) return throw_type(env, "udpLocalPort(fd)");
  if (!arg_i32(env, argv[0], "fd", &fd)) return NULL;
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
    char what[32];
    snprintf(what, sizeof what, "fd %d", fd);
    return throw_errno(env, errno, "getsockname", what, NULL);
  }
  return make_i32(env, ntohs(sa.sin_port));
}

/* recvBatch(fd, buf, slotSize, lengths, addrs, max, segSizes?) -> count
 * With segSizes, segSizes[i] is the size of the coalesced datagrams in slot i (UDP_GRO), or 0
 * when the slot holds one datagram. */
static napi_value recv_batch(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd, slot, max;
  uint8_t *buf;
  int32_t *lengths, *segs = NULL;
  uint32_t *addrs;
  size_t buflen, nlen, naddr, nsegs = 0;
  if (argc < 6) return throw_type(env, "recvBatch(fd, buf, slotSize, lengths, addrs, max)");
  if (!arg_i32(env, argv[0], "fd", &fd) || !ARG_BYTES(argv[1], "buf", &buf, &buflen) ||
      !arg_i32(env, argv[2], "slotSize", &slot) || !ARG_I32S(argv[3], "lengths", &lengths, &nlen) ||
      !ARG_U32S(argv[4], "addrs", &addrs, &naddr) || !arg_i32(env, argv[5], "max", &max))
    return NULL;
  if (slot <= 0 || max < 0 || (size_t)max > nlen || 2 * (size_t)max > naddr ||
      (size_t)max * (size_t)slot > buflen)
    return throw_range(env, "recvBatch: need slotSize > 0, max <= lengths.length, "
                            "2 * max <= addrs.length and max * slotSize <= buf.length");
  if (argc >= 7) {
    napi_valuetype t;
    napi_typeof(env, argv[6], &t);
    if (t != napi_undefined) {
      if (!ARG_I32S(argv[6], "segSizes", &segs, &nsegs)) return NULL;
      if ((size_t)max > nsegs) return throw_range(env, "recvBatch: max > segSizes.length");
    }
  }

  struct mmsghdr msgs[CHUNK];
  struct iovec iov[CHUNK];
  struct sockaddr_in from[CHUNK];
  /* Room for one UDP_GRO control message (an int) per datagram. */
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctrl[CHUNK];
  int got = 0, cleared = 0;
  while (got < max) {
    int want = max - got < CHUNK ? max - got : CHUNK;
    for (int i = 0; i < want; i++) {
      iov[i].iov_base = buf + (size_t)(got + i) * (size_t)slot;
      iov[i].iov_len = (size_t)slot;
      memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
      msgs[i].msg_hdr.msg_name = &from[i];
      msgs[i].msg_hdr.msg_namelen = sizeof from[i];
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      if (segs != NULL) {
        msgs[i].msg_hdr.msg_control = ctrl[i].buf;
        msgs[i].msg_hdr.msg_controllen = sizeof ctrl[i].buf;
      }
    }
    /* MSG_TRUNC makes msg_len the datagram's real length even when only `slot` bytes fit, so JS
     * can tell an oversized datagram from one that exactly fills the slot. */
    int r = recvmmsg(fd, msgs, (unsigned)want, MSG_DONTWAIT | MSG_TRUNC, NULL);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      /* A pending socket error (ICMP feedback about something we sent) is reported instead of
       * data, and reporting it clears it: try again. Bounded in case something keeps setting it. */
      if (is_peer_error(errno) && cleared++ < 16) continue;
      if (got > 0) break;
      char what[32];
      snprintf(what, sizeof what, "fd %d", fd);
      return throw_errno(env, errno, "recvmmsg", what, NULL);
    }
    for (int i = 0; i < r; i++) {
      lengths[got + i] = (int32_t)msgs[i].msg_len;
      addrs[2 * (got + i)] = ntohl(from[i].sin_addr.s_addr);
      addrs[2 * (got + i) + 1] = ntohs(from[i].sin_port);
      if (segs != NULL) {
        int seg = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c != NULL;
             c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
          if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO &&
              c->cmsg_len >= CMSG_LEN(sizeof(int)))
            memcpy(&seg, CMSG_DATA(c), sizeof seg);
        }
        segs[got + i] = seg;
      }
    }
    got += r;
    if (r < want) break; /* queue drained: skip the syscall that would only say EAGAIN */
  }
  return make_i32(env, got);
}

/* How many items from `first` one GSO send may carry: the same destination, every segment
 * but the last exactly as long as the first, the last no longer, within the kernel's limits. */
static int gso_group(const int32_t *lengths, const uint32_t *addrs, int first, int count) {
  int32_t seg = lengths[first];
  size_t total = (size_t)seg;
  int n = 1;
  while (first + n < count && n < GSO_MAX_SEGMENTS) {
    int k = first + n;
    if (addrs[2 * k] != addrs[2 * first] || addrs[2 * k + 1] != addrs[2 * first + 1]) break;
    if (lengths[k - 1] != seg || lengths[k] > seg || lengths[k] == 0) break;
    if (total + (size_t)lengths[k] > GSO_MAX_BYTES) break;
    total += (size_t)lengths[k];
    n++;
  }
  return n;
}

/* sendBatch(fd, buf, offsets, lengths, addrs, count, gso?) -> sent
 * With gso, runs of datagrams to one destination go out as one UDP_SEGMENT send each; their
 * bytes need not be adjacent (one iovec per datagram). */
static napi_value send_batch(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd, count;
  uint8_t *buf;
  int32_t *offsets, *lengths;
  uint32_t *addrs;
  size_t buflen, noff, nlen, naddr;
  bool gso = false;
  if (argc < 6) return throw_type(env, "sendBatch(fd, buf, offsets, lengths, addrs, count, gso?)");
  if (!arg_i32(env, argv[0], "fd", &fd) || !ARG_BYTES(argv[1], "buf", &buf, &buflen) ||
      !ARG_I32S(argv[2], "offsets", &offsets, &noff) ||
      !ARG_I32S(argv[3], "lengths", &lengths, &nlen) ||
      !ARG_U32S(argv[4], "addrs", &addrs, &naddr) || !arg_i32(env, argv[5], "count", &count))
    return NULL;
  if (argc >= 7) {
    napi_valuetype t;
    napi_typeof(env, argv[6], &t);
    if (t == napi_boolean) napi_get_value_bool(env, argv[6], &gso);
  }
  if (count < 0 || (size_t)count > noff || (size_t)count > nlen || 2 * (size_t)count > naddr)
    return throw_range(env, "sendBatch: need 0 <= count <= offsets.length, lengths.length "
                            "and 2 * count <= addrs.length");
  if (!check_spans(env, "sendBatch", buflen, offsets, lengths, count)) return NULL;
  for (int32_t i = 0; i < count; i++) {
    uint32_t port = addrs[2 * i + 1];
    if (port == 0 || port > 65535) {
      char msg[96];
      snprintf(msg, sizeof msg, "sendBatch: item %d has destination port %u", i, port);
      return throw_range(env, msg);
    }
  }

  struct mmsghdr msgs[CHUNK];
  struct iovec iov[CHUNK * GSO_MAX_SEGMENTS];
  struct sockaddr_in to[CHUNK];
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } ctrl[CHUNK];
  int items[CHUNK]; /* datagrams carried by each message */
  int i = 0, sent = 0, retried = -1;
  while (i < count) {
    int nmsg = 0, j = i, nio = 0;
    while (j < count && nmsg < CHUNK) {
      int n = gso ? gso_group(lengths, addrs, j, count) : 1;
      struct msghdr *h = &msgs[nmsg].msg_hdr;
      memset(h, 0, sizeof *h);
      memset(&to[nmsg], 0, sizeof to[nmsg]);
      to[nmsg].sin_family = AF_INET;
      to[nmsg].sin_addr.s_addr = htonl(addrs[2 * j]);
      to[nmsg].sin_port = htons((uint16_t)addrs[2 * j + 1]);
      h->msg_name = &to[nmsg];
      h->msg_namelen = sizeof to[nmsg];
      h->msg_iov = &iov[nio];
      h->msg_iovlen = (size_t)n;
      for (int k = 0; k < n; k++) {
        iov[nio + k].iov_base = buf + offsets[j + k];
        iov[nio + k].iov_len = (size_t)lengths[j + k];
      }
      if (n > 1) {
        h->msg_control = ctrl[nmsg].buf;
        h->msg_controllen = sizeof ctrl[nmsg].buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(h);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t seg = (uint16_t)lengths[j];
        memcpy(CMSG_DATA(c), &seg, sizeof seg);
      }
      items[nmsg++] = n;
      nio += n;
      j += n;
    }
    /* sendmmsg stops at the first failing message: it returns the count before it, or -1 with
     * that message's errno when it is the first. */
    int r = sendmmsg(fd, msgs, (unsigned)nmsg, MSG_DONTWAIT);
    if (r > 0) {
      for (int m = 0; m < r; m++) {
        i += items[m];
        sent += items[m];
      }
      continue;
    }
    if (r == 0) break; /* not expected from Linux; never spin */
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == ENOBUFS) break;
    if (is_peer_error(errno)) {
      /* The error may be a stale one, left on the socket by ICMP about an earlier datagram and
       * handed to whichever send comes next; failing cleared it, so retry this message once.
       * A second failure is really this destination's: skip it. */
      if (retried != i) retried = i;
      else i += items[0];
      continue;
    }
    char what[32];
    snprintf(what, sizeof what, "fd %d", fd);
    return throw_errno(env, errno, "sendmmsg", what,
                       gso && (errno == EIO || errno == EINVAL)
                           ? "UDP segmentation offload refused; send without gso"
                           : NULL);
  }
  return make_i32(env, sent);
}

/* pathMtu(ip) -> the kernel's MTU for the route to ip (IP_MTU on a connected UDP socket):
 * the device MTU, or a smaller path MTU the kernel has learnt. Sends nothing. */
static napi_value path_mtu(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char ip[INET_ADDRSTRLEN + 1];
  if (argc < 1) return throw_type(env, "pathMtu(ip)");
  if (!arg_str(env, argv[0], "ip", ip, sizeof ip)) return NULL;
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons(9); /* any port: connect() on UDP only picks the route */
  if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
    return throw_errno(env, EINVAL, "inet_pton", ip, "not a dotted-quad IPv4 address");
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket", ip, NULL);
  int mtu = 0;
  socklen_t len = sizeof mtu;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
      getsockopt(fd, IPPROTO_IP, IP_MTU, &mtu, &len) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "route lookup (IP_MTU)", ip, NULL);
  }
  close(fd);
  return make_i32(env, mtu);
}

/* closeFd(fd) */
static napi_value close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) return throw_type(env, "closeFd(fd)");
  if (!arg_i32(env, argv[0], "fd", &fd)) return NULL;
  /* On Linux the fd is gone even when close() says EINTR, so never retry (could close a reused
   * fd) and do not report it. */
  if (close(fd) < 0 && errno != EINTR) {
    char what[32];
    snprintf(what, sizeof what, "fd %d", fd);
    return throw_errno(env, errno, "close", what, NULL);
  }
  return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Netlink: raw AF_NETLINK sockets to the kernel. Messages are built and parsed in TypeScript;  */
/* these calls only open, send and receive datagrams.                                          */

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif
#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif

/* netlinkOpen(protocol, { netnsPath?, rcvbuf? }) -> fd */
static napi_value netlink_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) return throw_type(env, "netlinkOpen(protocol, opts?) needs a protocol");
  int32_t protocol, rcvbuf = 0;
  char netns[4096] = "";
  if (!arg_i32(env, argv[0], "protocol", &protocol)) return NULL;
  if (protocol < 0 || protocol > 31) return throw_range(env, "netlinkOpen: protocol must be 0..31");
  napi_valuetype t = napi_undefined;
  if (argc >= 2) napi_typeof(env, argv[1], &t);
  if (t == napi_object) {
    napi_value v;
    napi_valuetype vt;
    if (!opt_str(env, argv[1], "netnsPath", netns, sizeof netns)) return NULL;
    napi_get_named_property(env, argv[1], "rcvbuf", &v);
    napi_typeof(env, v, &vt);
    if (vt != napi_undefined && !arg_i32(env, v, "rcvbuf", &rcvbuf)) return NULL;
  } else if (t != napi_undefined && t != napi_null) {
    return throw_type(env, "opts must be an object");
  }

  char what[sizeof netns + 48];
  snprintf(what, sizeof what, netns[0] ? "netlink protocol %d in %s" : "netlink protocol %d",
           protocol, netns);

  /* A netlink socket talks to the kernel of the namespace it was created in, for its whole
   * life; so only socket() needs to run inside. Same enter/leave discipline as tapOpen. */
  int home = -1;
  if (netns[0] && !enter_netns(env, netns, &home)) return NULL;

  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, protocol);
  int err = fd < 0 ? errno : 0;

  leave_netns(home, "weft_native netlinkOpen");
  if (fd < 0)
    return throw_errno(env, err, "socket", what,
                       err == EPROTONOSUPPORT ? "this kernel lacks that netlink family" : NULL);

  set_buf(fd, SO_RCVBUFFORCE, SO_RCVBUF, rcvbuf);
  /* Best effort (4.3 / 4.12): CAP_ACK stops the kernel echoing the whole request in an error
   * ack; EXT_ACK adds a message and the offending attribute to it. */
  int one = 1;
  (void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  (void)setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);

  struct sockaddr_nl sa;
  memset(&sa, 0, sizeof sa);
  sa.nl_family = AF_NETLINK; /* nl_pid 0: the kernel assigns a unique port id */
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    err = errno;
    close(fd);
    return throw_errno(env, err, "bind", what, NULL);
  }
  return make_i32(env, fd);
}

/* netlinkSend(fd, buf, length) -> bytes sent */
static napi_value netlink_send(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) return throw_type(env, "netlinkSend(fd, buf, length)");
  int32_t fd, length;
  uint8_t *buf;
  size_t buflen;
  if (!arg_i32(env, argv[0], "fd", &fd) || !ARG_BYTES(argv[1], "buf", &buf, &buflen) ||
      !arg_i32(env, argv[2], "length", &length))
    return NULL;
  if (length <= 0 || (size_t)length > buflen)
    return throw_range(env, "netlinkSend: length must be 1..buf.length");
  struct sockaddr_nl sa;
  memset(&sa, 0, sizeof sa);
  sa.nl_family = AF_NETLINK; /* nl_pid 0: the kernel */
  ssize_t n;
  do
    n = sendto(fd, buf, (size_t)length, 0, (struct sockaddr *)&sa, sizeof sa);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    char what[32];
    snprintf(what, sizeof what, "fd %d", fd);
    return throw_errno(env, errno, "sendto", what, NULL);
  }
  return make_i32(env, (int32_t)n);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* netlinkRecv(fd, buf, timeoutMs) -> length of one datagram, or 0 on timeout */
static napi_value netlink_recv(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) return throw_type(env, "netlinkRecv(fd, buf, timeoutMs)");
  int32_t fd, timeout;
  uint8_t *buf;
  size_t buflen;
  if (!arg_i32(env, argv[0], "fd", &fd) || !ARG_BYTES(argv[1], "buf", &buf, &buflen) ||
      !arg_i32(env, argv[2], "timeoutMs", &timeout))
    return NULL;
  if (timeout < 0) return throw_range(env, "netlinkRecv: timeoutMs must be >= 0");
  char what[32];
  snprintf(what, sizeof what, "fd %d", fd);

  int64_t deadline = now_ms() + timeout;
  for (;;) {
    /* Peek the real size first (MSG_TRUNC reports it, copying nothing), so an oversized
     * datagram stays queued and the caller can retry with a bigger buffer. */
    ssize_t n = recv(fd, NULL, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
    if (n >= 0) {
      if ((size_t)n > buflen) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "netlinkRecv: datagram of %zd bytes does not fit buf (%zu bytes); it is still "
                 "queued",
                 n, buflen);
        return throw_range(env, msg);
      }
      do
        n = recv(fd, buf, buflen, MSG_TRUNC | MSG_DONTWAIT);
      while (n < 0 && errno == EINTR);
      if (n < 0) return throw_errno(env, errno, "recv", what, NULL);
      return make_i32(env, (int32_t)n);
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return throw_errno(env, errno, "recv", what,
                         errno == ENOBUFS ? "receive buffer overrun: messages were lost" : NULL);
    int64_t left = deadline - now_ms();
    if (left <= 0) return make_i32(env, 0);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r = poll(&pfd, 1, (int)left);
    if (r < 0 && errno != EINTR) return throw_errno(env, errno, "poll", what, NULL);
    if (r == 0) return make_i32(env, 0);
    if (r > 0 && (pfd.revents & POLLNVAL)) return throw_errno(env, EBADF, "poll", what, NULL);
    /* readable, error pending or interrupted: the recv above sorts it out */
  }
}

/* netlinkPortId(fd) -> nl_pid the kernel assigned (as an unsigned 32-bit number) */
static napi_value netlink_port_id(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) return throw_type(env, "netlinkPortId(fd)");
  if (!arg_i32(env, argv[0], "fd", &fd)) return NULL;
  struct sockaddr_nl sa;
  socklen_t len = sizeof sa;
  memset(&sa, 0, sizeof sa);
  char what[32];
  snprintf(what, sizeof what, "fd %d", fd);
  if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
    return throw_errno(env, errno, "getsockname", what, NULL);
  if (sa.nl_family != AF_NETLINK)
    return throw_errno(env, EAFNOSUPPORT, "getsockname", what, "not a netlink socket");
  napi_value v;
  napi_create_uint32(env, sa.nl_pid, &v);
  return v;
}

/* ------------------------------------------------------------------------------------------ */
/* AF_PACKET: one raw socket per VXLAN device, for the fast datapath's heartbeat frames (both   */
/* MACs and the EtherType zero). The kernel filter below is the only thing deciding which       */
/* frames reach user space; there is no frame parsing here.                                    */

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

/* Accept a frame only when its first 14 bytes (destination MAC, source MAC, EtherType) are all
 * zero, and then keep all of it; return 0 (drop, nothing copied) for anything else, including
 * frames shorter than 14 bytes (an out-of-bounds load ends the program with 0). */
static struct sock_filter zero_header_filter[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0),           /* 0: A = bytes 0..3 */
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 7),    /* 1: != 0 -> 9 */
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 4),           /* 2: A = bytes 4..7 */
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 5),    /* 3: != 0 -> 9 */
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 8),           /* 4: A = bytes 8..11 */
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 3),    /* 5: != 0 -> 9 */
    BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),          /* 6: A = EtherType */
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),    /* 7: != 0 -> 9 */
    BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),          /* 8: accept, whole frame */
    BPF_STMT(BPF_RET | BPF_K, 0),                    /* 9: drop */
};

/* packetOpen(ifname, { netnsPath? }) -> fd
 * A non-blocking AF_PACKET SOCK_RAW socket bound to `ifname` for every protocol (ETH_P_ALL),
 * ignoring frames the host sends (PACKET_IGNORE_OUTGOING), with zero_header_filter attached. */
static napi_value packet_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) return throw_type(env, "packetOpen(ifname, opts?) needs an interface name");
  char name[IFNAMSIZ], netns[4096] = "";
  if (!arg_str(env, argv[0], "ifname", name, sizeof name)) return NULL;
  napi_valuetype t = napi_undefined;
  if (argc >= 2) napi_typeof(env, argv[1], &t);
  if (t == napi_object) {
    if (!opt_str(env, argv[1], "netnsPath", netns, sizeof netns)) return NULL;
  } else if (t != napi_undefined && t != napi_null) {
    return throw_type(env, "opts must be an object");
  }

  char what[IFNAMSIZ + sizeof netns + 8];
  snprintf(what, sizeof what, netns[0] ? "%s in %s" : "%s", name, netns);

  /* A packet socket belongs to the namespace it is created in: bind() and SIOCGIFINDEX below
   * look the device up there, so only socket() runs inside. Protocol 0: the socket receives
   * nothing at all until bind() names ETH_P_ALL, and bind() comes after the filter, so no frame
   * the filter would refuse is ever queued (with htons(ETH_P_ALL) here, every frame of every
   * device would be queued unfiltered from this call until SO_ATTACH_FILTER). */
  int home = -1;
  if (netns[0] && !enter_netns(env, netns, &home)) return NULL;
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int err = fd < 0 ? errno : 0;
  leave_netns(home, "weft_native packetOpen");
  if (fd < 0)
    return throw_errno(env, err, "socket AF_PACKET", what,
                       err == EPERM ? "needs CAP_NET_RAW in the device's namespace" : NULL);

  const char *failed = NULL, *hint = NULL;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, strlen(name));
  struct sock_fprog prog = {
      .len = sizeof zero_header_filter / sizeof zero_header_filter[0],
      .filter = zero_header_filter,
  };
  int one = 1;
  if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) {
    failed = "ioctl SIOCGIFINDEX";
    if (errno == ENODEV) hint = "no such interface";
  } else if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0) {
    failed = "setsockopt PACKET_IGNORE_OUTGOING";
    if (errno == ENOPROTOOPT) hint = "needs Linux 4.20 or later";
  } else if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) {
    failed = "setsockopt SO_ATTACH_FILTER";
  } else {
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = ifr.ifr_ifindex;
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) failed = "bind";
  }
  if (failed != NULL) {
    err = errno;
    close(fd);
    return throw_errno(env, err, failed, what, hint);
  }

  /* Nothing can be queued yet (see above); drain anyway, bounded, so that even a kernel that
   * queued something early never hands it to JS. This also consumes the ENETDOWN a bind to a
   * device that is down leaves pending (the socket starts receiving once the device is up). */
  for (int i = 0; i < 4096; i++) {
    ssize_t n = recv(fd, NULL, 0, MSG_DONTWAIT | MSG_TRUNC);
    if (n >= 0 || errno == EINTR || errno == ENETDOWN) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    err = errno;
    close(fd);
    return throw_errno(env, err, "recv (drain)", what, NULL);
  }
  return make_i32(env, fd);
}

/* ------------------------------------------------------------------------------------------ */
/* Poller: uv_poll on an fd, calling onReadable() on the JS thread.                            */
/*                                                                                            */
/* Why not just uv_poll: when epoll reports POLLERR, libuv *stops* the handle and calls back   */
/* with UV_EBADF. An unconnected UDP socket rarely gets one, but a connected one (or one with  */
/* IP_RECVERR) does after any ICMP error, and a TAP does when its device is deleted. A poller  */
/* that stopped there would leave the data path deaf without a word. So on an error status we  */
/* clear the socket error (reading SO_ERROR clears it), start polling again and still call    */
/* onReadable, whose read then either finds data or throws the real error for JS to handle.   */
/* (If the error persists, e.g. a deleted TAP, JS sees the read throw every time and must      */
/* close the Poller; it is loud, never silent.)                                               */
/*                                                                                            */
/* Lifetimes: the uv handle lives until its close callback; the JS-side resources (references, */
/* async context) are released only from JS-thread code while the env is alive: close(), the  */
/* end of a callback that called close(), or the wrap finalizer (GC, or env teardown at exit). */
/* The close callback itself only frees memory, because at exit it may run after the N-API    */
/* environment is gone.                                                                       */

typedef struct {
  uv_poll_t handle; /* first member: the uv_handle_t* in callbacks is our struct */
  napi_env env;
  napi_ref callback;        /* strong: onReadable */
  napi_ref self;            /* the JS object; strong only while started, see set_started */
  napi_async_context async; /* so callbacks run like Node's own I/O callbacks (async_hooks) */
  int fd;
  bool started;
  bool closed;      /* close() was called; no more JS calls into this poller */
  bool in_callback; /* inside onReadable: defer releasing what the running call still uses */
} poller_t;

/* A started poller must not be garbage-collected (its callback would never fire again, and
 * nothing could stop it), so while started we hold its JS object strongly. */
static void set_started(poller_t *p, bool on) {
  if (p->started == on) return;
  p->started = on;
  if (p->self == NULL) return;
  uint32_t count;
  if (on) napi_reference_ref(p->env, p->self, &count);
  else napi_reference_unref(p->env, p->self, &count);
}

static void poller_on_close(uv_handle_t *h) {
  free(h); /* only memory: see "Lifetimes" above */
}

static void poller_release(napi_env env, poller_t *p) {
  if (p->self != NULL) napi_delete_reference(env, p->self);
  p->self = NULL;
  p->started = false;
  napi_delete_reference(env, p->callback);
  napi_async_destroy(env, p->async);
  uv_close((uv_handle_t *)&p->handle, poller_on_close); /* also stops polling */
}

static void poller_call_js(poller_t *p) {
  napi_env env = p->env;
  napi_handle_scope scope;
  napi_value cb, recv, result;
  napi_open_handle_scope(env, &scope);
  napi_get_reference_value(env, p->callback, &cb);
  napi_get_global(env, &recv);
  p->in_callback = true;
  /* napi_make_callback (not napi_call_function) because we are called from the event loop, not
   * from JS: it runs the microtask and nextTick queues afterwards, as Node does for its own I/O. */
  if (napi_make_callback(env, p->async, recv, cb, 0, NULL, &result) == napi_pending_exception) {
    napi_value exc;
    napi_get_and_clear_last_exception(env, &exc);
    napi_fatal_exception(env, exc); /* -> process 'uncaughtException', like any I/O callback */
  }
  p->in_callback = false;
  napi_close_handle_scope(env, scope);
  if (p->closed) poller_release(env, p); /* onReadable called close() */
}

static void poller_on_poll(uv_poll_t *h, int status, int events) {
  poller_t *p = (poller_t *)h;
  (void)events;
  if (status < 0) {
    /* libuv has already stopped the handle (POLLERR). Clear the socket error so epoll does not
     * report it again at once; harmless ENOTSOCK for a TAP. Then resume. */
    int soerr = 0;
    socklen_t len = sizeof soerr;
    (void)getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
    if (p->started && uv_poll_start(h, UV_READABLE, poller_on_poll) != 0)
      set_started(p, false); /* fd closed under us: the read in onReadable will say so */
  }
  poller_call_js(p);
}

/* Runs when the object is collected without close() (then it was not started: set_started
 * holds a started one), or for every live Poller when the env is torn down at exit. */
static void poller_finalize(napi_env env, void *data, void *hint) {
  poller_t *p = data;
  (void)hint;
  p->closed = true;
  uv_poll_stop(&p->handle);
  if (!p->in_callback) poller_release(env, p);
}

/* new Poller(fd, onReadable) */
static napi_value poller_new(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self, target;
  napi_get_cb_info(env, info, &argc, argv, &self, NULL);
  napi_get_new_target(env, info, &target);
  if (target == NULL) return throw_type(env, "Poller must be called with new");
  int32_t fd;
  napi_valuetype t = napi_undefined;
  if (argc < 2) return throw_type(env, "new Poller(fd, onReadable)");
  if (!arg_i32(env, argv[0], "fd", &fd)) return NULL;
  napi_typeof(env, argv[1], &t);
  if (t != napi_function) return throw_type(env, "onReadable must be a function");

  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  poller_t *p = calloc(1, sizeof *p);
  if (p == NULL) return throw_errno(env, ENOMEM, "calloc", "Poller", NULL);
  int rc = uv_poll_init(loop, &p->handle, fd);
  if (rc != 0) {
    free(p); /* uv_poll_init registers nothing when it fails */
    char what[32];
    snprintf(what, sizeof what, "fd %d", fd);
    return throw_errno(env, -rc, "uv_poll_init", what, NULL);
  }
  p->env = env;
  p->fd = fd;
  napi_create_reference(env, argv[1], 1, &p->callback);
  napi_value resource, name;
  napi_create_object(env, &resource);
  napi_create_string_utf8(env, "weft.Poller", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, resource, name, &p->async);
  /* p->self starts weak (count 0); set_started makes it strong while polling. */
  napi_wrap(env, self, p, poller_finalize, NULL, &p->self);
  return self;
}

static poller_t *poller_this(napi_env env, napi_callback_info info) {
  napi_value self;
  poller_t *p = NULL;
  napi_get_cb_info(env, info, NULL, NULL, &self, NULL);
  if (napi_unwrap(env, self, (void **)&p) != napi_ok || p == NULL) {
    throw_errno(env, EBADF, "Poller", "closed", "the Poller was closed");
    return NULL;
  }
  return p;
}

static napi_value poller_start(napi_env env, napi_callback_info info) {
  poller_t *p = poller_this(env, info);
  if (p == NULL) return NULL;
  if (!p->started) {
    int rc = uv_poll_start(&p->handle, UV_READABLE, poller_on_poll);
    if (rc != 0) {
      char what[32];
      snprintf(what, sizeof what, "fd %d", p->fd);
      return throw_errno(env, -rc, "uv_poll_start", what, NULL);
    }
    set_started(p, true);
  }
  return NULL;
}

static napi_value poller_stop(napi_env env, napi_callback_info info) {
  poller_t *p = poller_this(env, info);
  if (p == NULL) return NULL;
  uv_poll_stop(&p->handle);
  set_started(p, false);
  return NULL;
}

static napi_value poller_close(napi_env env, napi_callback_info info) {
  napi_value self;
  poller_t *p = NULL;
  napi_get_cb_info(env, info, NULL, NULL, &self, NULL);
  if (napi_unwrap(env, self, (void **)&p) != napi_ok || p == NULL) return NULL; /* idempotent */
  napi_remove_wrap(env, self, NULL); /* the finalizer will not run: we release here */
  p->closed = true;
  uv_poll_stop(&p->handle);
  set_started(p, false);
  if (!p->in_callback) poller_release(env, p); /* else poller_call_js does it on return */
  return NULL;
}

static napi_value poller_ref(napi_env env, napi_callback_info info) {
  poller_t *p = poller_this(env, info);
  if (p != NULL) uv_ref((uv_handle_t *)&p->handle);
  return NULL;
}

static napi_value poller_unref(napi_env env, napi_callback_info info) {
  poller_t *p = poller_this(env, info);
  if (p != NULL) uv_unref((uv_handle_t *)&p->handle);
  return NULL;
}

/* ------------------------------------------------------------------------------------------ */

NAPI_MODULE_INIT() {
  napi_property_descriptor fns[] = {
      {"tapOpen", NULL, tap_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readFrames", NULL, read_frames, NULL, NULL, NULL, napi_enumerable, NULL},
      {"writeFrames", NULL, write_frames, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpOpen", NULL, udp_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpLocalPort", NULL, udp_local_port, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvBatch", NULL, recv_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendBatch", NULL, send_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pathMtu", NULL, path_mtu, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netlinkOpen", NULL, netlink_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netlinkSend", NULL, netlink_send, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netlinkRecv", NULL, netlink_recv, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netlinkPortId", NULL, netlink_port_id, NULL, NULL, NULL, napi_enumerable, NULL},
      {"packetOpen", NULL, packet_open, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns);

  napi_property_descriptor methods[] = {
      {"start", NULL, poller_start, NULL, NULL, NULL, napi_default_method, NULL},
      {"stop", NULL, poller_stop, NULL, NULL, NULL, napi_default_method, NULL},
      {"close", NULL, poller_close, NULL, NULL, NULL, napi_default_method, NULL},
      {"ref", NULL, poller_ref, NULL, NULL, NULL, napi_default_method, NULL},
      {"unref", NULL, poller_unref, NULL, NULL, NULL, napi_default_method, NULL},
  };
  napi_value cls;
  napi_define_class(env, "Poller", NAPI_AUTO_LENGTH, poller_new, NULL,
                    sizeof methods / sizeof methods[0], methods, &cls);
  napi_set_named_property(env, exports, "Poller", cls);
  return exports;
}
