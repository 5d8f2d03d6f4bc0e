/* The floor loop of wakeup_floor.py in C: the same idle packets, the same follow
 * cadence, an HMAC-SHA256 over every heartbeat sent and received. It answers "what
 * would the calm steady state cost outside CPython, on this host, now", the question
 * behind a C helper for it (docs/timing.md, "The floor in C"). A measuring tool of the
 * lab, never part of the agent.
 *
 * argv: interval port heartbeat_bytes follow(0|1) follow_reach follow_grace counts_path
 *       beat_to_a beat_to_b, then (source target every) per echo target
 * Writes {"sent": N, "received": N, "followed": N} to counts_path on SIGTERM. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_ECHO 8
#define ICMP_ECHO_REPLY_ONLY (~1U) /* ICMP_FILTER: drop every type but 0 */

/* libcrypto is opened at run time: the host has the library (Python's ssl needs it)
 * but not necessarily its headers */
typedef const void *(*evp_md_fn)(void);
typedef unsigned char *(*hmac_fn)(const void *, const void *, int, const unsigned char *,
                                  size_t, unsigned char *, unsigned int *);
static evp_md_fn sha256;
static hmac_fn hmac;

struct echo {
    int fd;
    struct sockaddr_in to;
    int every;
};

static volatile sig_atomic_t stopping;
static long sent, received, followed;

static void on_term(int sig) {
    (void)sig;
    stopping = 1;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static struct sockaddr_in address(const char *text, int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, text, &a.sin_addr) != 1) {
        fprintf(stderr, "not an IPv4 address: %s\n", text);
        exit(2);
    }
    return a;
}

static void sign(const unsigned char *data, size_t n, unsigned char *mac) {
    static const unsigned char key[32] = "mosqit-failover floor key 32 B!";
    unsigned int len;
    hmac(sha256(), key, sizeof key, data, n, mac, &len);
}

static void echo_request(unsigned char *req, long slot) {
    static const char payload[16] = "mosqit-failover!";
    memset(req, 0, 24);
    req[0] = 8; /* echo request */
    req[4] = 0x4D;
    req[5] = 0x51;
    req[6] = (slot >> 8) & 0xFF;
    req[7] = slot & 0xFF;
    memcpy(req + 8, payload, sizeof payload);
    unsigned long sum = 0;
    for (int i = 0; i < 24; i += 2) sum += (unsigned long)(req[i] << 8 | req[i + 1]);
    while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
    req[2] = (~sum >> 8) & 0xFF;
    req[3] = ~sum & 0xFF;
}

static void watch(int epoll, int fd) {
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &ev);
}

static void arm(int timer, double at) {
    struct itimerspec when = {0};
    when.it_value.tv_sec = (time_t)at;
    when.it_value.tv_nsec = (long)((at - floor(at)) * 1e9) | 1; /* never 0: disarms */
    timerfd_settime(timer, TFD_TIMER_ABSTIME, &when, NULL);
}

int main(int argc, char **argv) {
    if (argc < 10 || (argc - 10) % 3 || (argc - 10) / 3 > MAX_ECHO) {
        fprintf(stderr, "usage: see the comment at the top of wakeup_floor.c\n");
        return 2;
    }
    void *crypto = dlopen("libcrypto.so.3", RTLD_NOW);
    if (!crypto || !(sha256 = (evp_md_fn)dlsym(crypto, "EVP_sha256")) ||
        !(hmac = (hmac_fn)dlsym(crypto, "HMAC"))) {
        fprintf(stderr, "libcrypto.so.3 (OpenSSL 3) is needed: %s\n", dlerror());
        return 2;
    }
    double interval = atof(argv[1]);
    int port = atoi(argv[2]), beat_bytes = atoi(argv[3]), follow = atoi(argv[4]);
    double reach = atof(argv[5]) * interval, grace_while_following = atof(argv[6]) * interval;
    const char *counts_path = argv[7];
    struct sockaddr_in beat_to[2] = {address(argv[8], port), address(argv[9], port)};
    if (beat_bytes < 64 || beat_bytes > 1500) return 2;

    int epoll = epoll_create1(EPOLL_CLOEXEC);
    int udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(udp, (struct sockaddr *)&any, sizeof any)) {
        perror("bind");
        return 2;
    }
    watch(epoll, udp);
    struct echo echoes[MAX_ECHO];
    int n_echo = 0;
    for (int a = 10; a < argc; a += 3, n_echo++) {
        struct sockaddr_in source = address(argv[a], 0);
        echoes[n_echo].fd = -1;
        for (int e = 0; e < n_echo; e++) /* one raw socket per source address */
            if (!strcmp(argv[10 + 3 * e], argv[a])) echoes[n_echo].fd = echoes[e].fd;
        if (echoes[n_echo].fd < 0) {
            int raw = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK, IPPROTO_ICMP);
            unsigned int filter = ICMP_ECHO_REPLY_ONLY;
            if (raw < 0 || bind(raw, (struct sockaddr *)&source, sizeof source)) {
                perror("raw socket");
                return 2;
            }
            setsockopt(raw, 255 /* SOL_RAW */, 1 /* ICMP_FILTER */, &filter, sizeof filter);
            watch(epoll, raw);
            echoes[n_echo].fd = raw;
        }
        echoes[n_echo].to = address(argv[a + 1], 0);
        echoes[n_echo].every = atoi(argv[a + 2]) > 0 ? atoi(argv[a + 2]) : 1;
    }
    int timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    watch(epoll, timer);
    signal(SIGTERM, on_term);

    unsigned char beat[1500] = {0}, buffer[2048], mac[64], request[24];
    double start = now(), last = -1e9;
    long slot = 0;
    int following = 0;
    arm(timer, start);
    while (!stopping) {
        struct epoll_event ready[MAX_ECHO + 2];
        int n = epoll_wait(epoll, ready, MAX_ECHO + 2, -1);
        int due = 0, heartbeat_in = 0;
        for (int i = 0; i < n; i++) {
            int fd = ready[i].data.fd;
            if (fd == timer) {
                unsigned long long expirations;
                due = read(timer, &expirations, sizeof expirations) > 0;
                continue;
            }
            ssize_t got;
            while ((got = recv(fd, buffer, sizeof buffer, 0)) >= 0) { /* drain */
                received++;
                if (fd == udp) {
                    sign(buffer, (size_t)got, mac); /* what a receiver verifies */
                    heartbeat_in = 1;
                }
            }
        }
        double grace = following ? grace_while_following : 0.0;
        if (!due && heartbeat_in && follow) { /* wakeup_floor.py's follow() */
            double slot_at = start + slot * interval, t = now();
            if (slot_at - t >= -grace) {
                double moved = fmax(t, fmax(slot_at - reach, last + interval - reach));
                if (moved <= t) {
                    start -= slot_at - t + 1e-6;
                    followed++;
                    due = 2;
                } else if (moved < slot_at) {
                    start -= slot_at - moved + 1e-6;
                    arm(timer, start + slot * interval + grace);
                }
            }
        }
        if (!due) continue;
        for (int e = 0; e < n_echo; e++) {
            if (slot % echoes[e].every) continue;
            echo_request(request, slot);
            sendto(echoes[e].fd, request, sizeof request, 0, (struct sockaddr *)&echoes[e].to,
                   sizeof echoes[e].to);
            sent++;
        }
        sign(beat, (size_t)beat_bytes - 32, beat + beat_bytes - 32);
        sendto(udp, beat, (size_t)beat_bytes, 0, (struct sockaddr *)&beat_to[slot % 2],
               sizeof beat_to[0]);
        sent++;
        slot++;
        last = now();
        following = due == 2;
        arm(timer, start + slot * interval + (following ? grace_while_following : 0.0));
    }
    FILE *out = fopen(counts_path, "w");
    if (!out) return 1;
    fprintf(out, "{\"sent\": %ld, \"received\": %ld, \"followed\": %ld}\n", sent, received,
            followed);
    return fclose(out) ? 1 : 0;
}
