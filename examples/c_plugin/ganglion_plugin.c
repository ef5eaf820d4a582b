/*
 * An external ganglion plugin in C, using only libzmq (docs/plugin-frames.md).
 *
 * Theory of operation: a node's plugin bus has two addresses. The plugin
 * connects an XPUB socket to the *publish* address and sends two frames,
 * [type name, CBOR payload]; it uses XPUB rather than PUB because an XPUB
 * receives the node's subscription (the single byte 0x01), so the plugin
 * knows when the node is listening and its first readings are not lost.
 * It connects a SUB socket to the *subscribe* address, subscribes to a type
 * name, and receives three frames, [type name, CBOR payload, CBOR meta].
 *
 * Every INTERVAL_MS it publishes an examples.CCounter reading, the CBOR map
 * {"count": n, "source": "c"} encoded by hand, and in between prints every
 * sensors.Temperature it receives, decoding the flat CBOR maps it needs.
 *
 * Usage: ganglion_plugin WHERE [COUNT [INTERVAL_MS]]
 *   WHERE is a node's state directory (sockets <dir>/bus.pub and .sub), an
 *   ipc base path (<base>.pub and <base>.sub), or tcp://127.0.0.1:PORT
 *   (publish at PORT, subscribe at PORT + 1). COUNT defaults to 10 and
 *   INTERVAL_MS to 1000. Exits 0 when done, 1 on a usage or zmq error,
 *   2 if no node listens within 5 seconds.
 */

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zmq.h>

#define ADDR_MAX 512
#define READY_TIMEOUT_MS 5000
#define SUBSCRIBE_TYPE "sensors.Temperature"
#define PUBLISH_TYPE "examples.CCounter"

static volatile sig_atomic_t stopping = 0;

static void on_signal(int sig) { (void)sig; stopping = 1; }

/* ---- addresses --------------------------------------------------------- */

static int bus_addresses(const char *where, char *pub, char *sub) {
    if (strncmp(where, "tcp://", 6) == 0) {
        const char *colon = strrchr(where, ':');
        long port = colon ? strtol(colon + 1, NULL, 10) : 0;
        if (colon == where + 3 || port <= 0 || port >= 65535) return -1;
        int host_len = (int)(colon - where);
        snprintf(pub, ADDR_MAX, "%.*s:%ld", host_len, where, port);
        snprintf(sub, ADDR_MAX, "%.*s:%ld", host_len, where, port + 1);
        return 0;
    }
    if (strncmp(where, "ipc://", 6) == 0) where += 6;
    struct stat st;
    const char *sep = (stat(where, &st) == 0 && S_ISDIR(st.st_mode)) ? "/bus" : "";
    if (snprintf(pub, ADDR_MAX, "ipc://%s%s.pub", where, sep) >= ADDR_MAX) return -1;
    snprintf(sub, ADDR_MAX, "ipc://%s%s.sub", where, sep);
    return 0;
}

/* ---- CBOR encoding (RFC 8949 section 3), just what the counter needs ---- */

static size_t cbor_head(uint8_t *out, uint8_t major, uint64_t value) {
    uint8_t mt = (uint8_t)(major << 5);
    if (value < 24) { out[0] = mt | (uint8_t)value; return 1; }
    int bytes = value <= 0xff ? 1 : value <= 0xffff ? 2 : value <= 0xffffffffu ? 4 : 8;
    out[0] = mt | (uint8_t)(bytes == 1 ? 24 : bytes == 2 ? 25 : bytes == 4 ? 26 : 27);
    for (int i = 0; i < bytes; i++) out[1 + i] = (uint8_t)(value >> (8 * (bytes - 1 - i)));
    return 1 + (size_t)bytes;
}

static size_t cbor_text(uint8_t *out, const char *text) {
    size_t len = strlen(text);
    size_t n = cbor_head(out, 3, len);
    memcpy(out + n, text, len);
    return n + len;
}

/* {"count": count, "source": "c"}: at most 1 + 6 + 9 + 7 + 2 = 25 bytes. */
static size_t encode_counter(uint8_t *out, uint64_t count) {
    size_t n = cbor_head(out, 5, 2);
    n += cbor_text(out + n, "count");
    n += cbor_head(out + n, 0, count);
    n += cbor_text(out + n, "source");
    n += cbor_text(out + n, "c");
    return n;
}

/* ---- CBOR decoding: print a flat map of scalars ------------------------ */

typedef struct { const uint8_t *p, *end; } reader;

static int read_head(reader *r, uint8_t *major, uint8_t *info, uint64_t *value) {
    if (r->p >= r->end) return -1;
    *major = *r->p >> 5;
    *info = *r->p & 0x1f;
    r->p++;
    if (*info < 24) { *value = *info; return 0; }
    if (*info > 27) return -1; /* indefinite lengths: not used by ganglion */
    int bytes = 1 << (*info - 24);
    if (r->end - r->p < bytes) return -1;
    *value = 0;
    for (int i = 0; i < bytes; i++) *value = (*value << 8) | *r->p++;
    return 0;
}

static double half_to_double(uint16_t h) {
    int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    double v = exp == 0 ? ldexp(mant, -24) : exp == 31 ? (mant ? NAN : INFINITY)
             : ldexp(mant + 1024, exp - 25);
    return (h & 0x8000) ? -v : v;
}

/* Print one scalar item; nested containers and tags are shown as "...". */
static int print_item(reader *r) {
    uint8_t major, info;
    uint64_t v;
    if (read_head(r, &major, &info, &v) != 0) return -1;
    switch (major) {
    case 0: printf("%llu", (unsigned long long)v); return 0;
    case 1: printf("-%llu", (unsigned long long)v + 1); return 0;
    case 2:
    case 3:
        if ((uint64_t)(r->end - r->p) < v) return -1;
        if (major == 3) printf("\"%.*s\"", (int)v, (const char *)r->p);
        else printf("<%llu bytes>", (unsigned long long)v);
        r->p += v;
        return 0;
    case 7:
        if (info == 20 || info == 21) { printf(info == 21 ? "true" : "false"); return 0; }
        if (info == 22) { printf("null"); return 0; }
        if (info == 25) { printf("%g", half_to_double((uint16_t)v)); return 0; }
        if (info == 26) { uint32_t b = (uint32_t)v; float f; memcpy(&f, &b, 4); printf("%g", f); return 0; }
        if (info == 27) { double d; memcpy(&d, &v, 8); printf("%g", d); return 0; }
        return -1;
    default:
        printf("...");
        return -1; /* arrays, maps and tags would need a real decoder */
    }
}

static int print_map(const uint8_t *data, size_t size) {
    reader r = {data, data + size};
    uint8_t major, info;
    uint64_t pairs;
    if (read_head(&r, &major, &info, &pairs) != 0 || major != 5) return -1;
    printf("{");
    for (uint64_t i = 0; i < pairs; i++) {
        if (i) printf(", ");
        if (print_item(&r) != 0) { printf("}"); return -1; }
        printf(": ");
        if (print_item(&r) != 0) { printf("}"); return -1; }
    }
    printf("}");
    return 0;
}

/* ---- the plugin ---------------------------------------------------------- */

/* Wait for the node's subscription on our XPUB; 0 when it listens. */
static int wait_listening(void *pub) {
    zmq_pollitem_t item = {pub, 0, ZMQ_POLLIN, 0};
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long waited = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (waited >= READY_TIMEOUT_MS || stopping) return -1;
        if (zmq_poll(&item, 1, READY_TIMEOUT_MS - waited) < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (!(item.revents & ZMQ_POLLIN)) continue;
        uint8_t event[256];
        int n = zmq_recv(pub, event, sizeof event, 0);
        if (n == 1 && event[0] == 1) return 0; /* subscribe-to-everything */
    }
}

static int publish_counter(void *pub, uint64_t count) {
    uint8_t payload[32];
    size_t size = encode_counter(payload, count);
    if (zmq_send(pub, PUBLISH_TYPE, strlen(PUBLISH_TYPE), ZMQ_SNDMORE) < 0) return -1;
    if (zmq_send(pub, payload, size, 0) < 0) return -1;
    printf("sent %s {\"count\": %llu, \"source\": \"c\"}\n", PUBLISH_TYPE, (unsigned long long)count);
    return 0;
}

/* Receive one multipart message and print it; extra frames are ignored. */
static void print_delivery(void *sub) {
    zmq_msg_t frames[3];
    int got = 0, more = 1;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sub, 0) < 0) { zmq_msg_close(&part); break; }
        more = zmq_msg_more(&part);
        if (got < 3) frames[got++] = part;
        else zmq_msg_close(&part);
    }
    if (got == 3) {
        const char *name = zmq_msg_data(&frames[0]);
        int name_len = (int)zmq_msg_size(&frames[0]);
        /* zmq matched a prefix; the type name must match exactly. */
        if (name_len == (int)strlen(SUBSCRIBE_TYPE) && memcmp(name, SUBSCRIBE_TYPE, name_len) == 0) {
            printf("recv %.*s ", name_len, name);
            if (print_map(zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1])) != 0)
                printf(" (payload not fully decoded)");
            printf(" meta ");
            print_map(zmq_msg_data(&frames[2]), zmq_msg_size(&frames[2]));
            printf("\n");
        }
    } else {
        printf("skipped a message of %d frames\n", got);
    }
    for (int i = 0; i < got; i++) zmq_msg_close(&frames[i]);
}

/* Poll the SUB socket for up to ms milliseconds, printing what arrives. */
static int receive_for(void *sub, long ms) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    zmq_pollitem_t item = {sub, 0, ZMQ_POLLIN, 0};
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long waited = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (waited >= ms || stopping) return 0;
        if (zmq_poll(&item, 1, ms - waited) < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (item.revents & ZMQ_POLLIN) print_delivery(sub);
    }
}

int main(int argc, char **argv) {
    char pub_addr[ADDR_MAX], sub_addr[ADDR_MAX];
    if (argc < 2 || argc > 4 || bus_addresses(argv[1], pub_addr, sub_addr) != 0) {
        fprintf(stderr, "usage: %s STATE_DIR|IPC_BASE|tcp://127.0.0.1:PORT [COUNT [INTERVAL_MS]]\n",
                argv[0]);
        return 1;
    }
    long count = argc > 2 ? strtol(argv[2], NULL, 10) : 10;
    long interval = argc > 3 ? strtol(argv[3], NULL, 10) : 1000;
    if (count < 0 || interval < 0) {
        fprintf(stderr, "COUNT and INTERVAL_MS must not be negative\n");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    void *ctx = zmq_ctx_new();
    void *pub = zmq_socket(ctx, ZMQ_XPUB);
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(pub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    int status = 1;
    if (zmq_connect(pub, pub_addr) != 0 || zmq_connect(sub, sub_addr) != 0 ||
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, SUBSCRIBE_TYPE, strlen(SUBSCRIBE_TYPE)) != 0) {
        fprintf(stderr, "zmq: %s\n", zmq_strerror(errno));
        goto done;
    }
    printf("connected %s %s\n", pub_addr, sub_addr);
    if (wait_listening(pub) != 0) {
        fprintf(stderr, "no node is listening on %s\n", pub_addr);
        status = 2;
        goto done;
    }
    printf("listening\n");
    for (long n = 0; n < count && !stopping; n++) {
        if (publish_counter(pub, (uint64_t)n) != 0 || receive_for(sub, interval) != 0) {
            fprintf(stderr, "zmq: %s\n", zmq_strerror(errno));
            goto done;
        }
    }
    status = 0;
    printf("done\n");
done:
    zmq_close(pub);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return status;
}
