/* The part of librdkafka's public C API that gateway/kafka/_rdkafka.pyx uses, declared here so the
 * build needs no librdkafka development package: the library itself is the one confluent-kafka bundles.
 * Names, values and layouts are those of librdkafka's rdkafka.h, whose ABI is stable across 2.x
 * (types and functions are only ever added; rd_kafka_vu_t keeps 64 bytes of padding for that). */
#ifndef GATEWAY_RDKAFKA_H
#define GATEWAY_RDKAFKA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_conf_s rd_kafka_conf_t;
typedef struct rd_kafka_topic_s rd_kafka_topic_t;
typedef struct rd_kafka_topic_conf_s rd_kafka_topic_conf_t;
typedef struct rd_kafka_queue_s rd_kafka_queue_t;
typedef struct rd_kafka_headers_s rd_kafka_headers_t;
typedef struct rd_kafka_error_s rd_kafka_error_t;
typedef int rd_kafka_resp_err_t; /* an enum in rdkafka.h */

#define RD_KAFKA_RESP_ERR_NO_ERROR 0
#define RD_KAFKA_RESP_ERR__FATAL (-150)
#define RD_KAFKA_PRODUCER 0
#define RD_KAFKA_CONF_OK 0
#define RD_KAFKA_MSG_F_COPY 0x2
#define RD_KAFKA_PURGE_F_QUEUE 0x1
#define RD_KAFKA_PURGE_F_INFLIGHT 0x2

typedef struct rd_kafka_message_s {
        rd_kafka_resp_err_t err;
        rd_kafka_topic_t *rkt;
        int32_t partition;
        void *payload;
        size_t len;
        void *key;
        size_t key_len;
        int64_t offset;
        void *_private; /* the producer's per-record opaque */
} rd_kafka_message_t;

/* rd_kafka_produceva()'s fields (rd_kafka_vtype_t). */
#define RD_KAFKA_VTYPE_END 0
#define RD_KAFKA_VTYPE_RKT 2
#define RD_KAFKA_VTYPE_PARTITION 3
#define RD_KAFKA_VTYPE_VALUE 4
#define RD_KAFKA_VTYPE_KEY 5
#define RD_KAFKA_VTYPE_OPAQUE 6
#define RD_KAFKA_VTYPE_MSGFLAGS 7
#define RD_KAFKA_VTYPE_TIMESTAMP 8
#define RD_KAFKA_VTYPE_HEADERS 10

typedef struct rd_kafka_vu_s {
        int vtype;
        union {
                const char *cstr;
                rd_kafka_topic_t *rkt;
                int i;
                int32_t i32;
                int64_t i64;
                struct {
                        void *ptr;
                        size_t size;
                } mem;
                struct {
                        const char *name;
                        const void *val;
                        ssize_t size;
                } header;
                rd_kafka_headers_t *headers;
                void *ptr;
                char _pad[64];
        } u;
} rd_kafka_vu_t;

rd_kafka_conf_t *rd_kafka_conf_new(void);
void rd_kafka_conf_destroy(rd_kafka_conf_t *conf);
int rd_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                      size_t errstr_size);
void rd_kafka_conf_set_opaque(rd_kafka_conf_t *conf, void *opaque);
void rd_kafka_conf_set_dr_msg_cb(rd_kafka_conf_t *conf,
                                 void (*dr_msg_cb)(rd_kafka_t *rk, const rd_kafka_message_t *rkmessage,
                                                   void *opaque));
void rd_kafka_conf_set_error_cb(rd_kafka_conf_t *conf,
                                void (*error_cb)(rd_kafka_t *rk, int err, const char *reason, void *opaque));
void rd_kafka_conf_set_log_cb(rd_kafka_conf_t *conf,
                              void (*log_cb)(const rd_kafka_t *rk, int level, const char *fac, const char *buf));
void rd_kafka_conf_set_stats_cb(rd_kafka_conf_t *conf,
                                int (*stats_cb)(rd_kafka_t *rk, char *json, size_t json_len, void *opaque));

rd_kafka_t *rd_kafka_new(int type, rd_kafka_conf_t *conf, char *errstr, size_t errstr_size);
void rd_kafka_destroy(rd_kafka_t *rk);
void *rd_kafka_opaque(const rd_kafka_t *rk);
const char *rd_kafka_name(const rd_kafka_t *rk);
int rd_kafka_poll(rd_kafka_t *rk, int timeout_ms);
int rd_kafka_outq_len(rd_kafka_t *rk);
rd_kafka_resp_err_t rd_kafka_purge(rd_kafka_t *rk, int purge_flags);
rd_kafka_resp_err_t rd_kafka_fatal_error(rd_kafka_t *rk, char *errstr, size_t errstr_size);
const char *rd_kafka_err2str(rd_kafka_resp_err_t err);
const char *rd_kafka_err2name(rd_kafka_resp_err_t err);
int64_t rd_kafka_message_timestamp(const rd_kafka_message_t *rkmessage, void *tstype);

rd_kafka_topic_t *rd_kafka_topic_new(rd_kafka_t *rk, const char *topic, rd_kafka_topic_conf_t *conf);
void rd_kafka_topic_destroy(rd_kafka_topic_t *rkt);

rd_kafka_queue_t *rd_kafka_queue_get_main(rd_kafka_t *rk);
void rd_kafka_queue_destroy(rd_kafka_queue_t *rkqu);
void rd_kafka_queue_io_event_enable(rd_kafka_queue_t *rkqu, int fd, const void *payload, size_t size);
rd_kafka_resp_err_t rd_kafka_set_log_queue(rd_kafka_t *rk, rd_kafka_queue_t *rkqu);

rd_kafka_headers_t *rd_kafka_headers_new(size_t initial_count);
void rd_kafka_headers_destroy(rd_kafka_headers_t *hdrs);
rd_kafka_resp_err_t rd_kafka_header_add(rd_kafka_headers_t *hdrs, const char *name, ssize_t name_size,
                                        const void *value, ssize_t value_size);

rd_kafka_error_t *rd_kafka_produceva(rd_kafka_t *rk, const rd_kafka_vu_t *vus, size_t cnt);
rd_kafka_resp_err_t rd_kafka_error_code(const rd_kafka_error_t *error);
void rd_kafka_error_destroy(rd_kafka_error_t *error);

/* One record with every field the gateway sets (headers only when there are some). */
static inline rd_kafka_resp_err_t gw_produce(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int32_t partition,
                                             const char *value, size_t value_len, const char *key,
                                             size_t key_len, int64_t timestamp, rd_kafka_headers_t *headers,
                                             void *opaque) {
        rd_kafka_vu_t vus[8];
        size_t n = 7;
        rd_kafka_error_t *error;
        rd_kafka_resp_err_t err;
        vus[0].vtype = RD_KAFKA_VTYPE_RKT;
        vus[0].u.rkt = rkt;
        vus[1].vtype = RD_KAFKA_VTYPE_PARTITION;
        vus[1].u.i32 = partition;
        vus[2].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
        vus[2].u.i = RD_KAFKA_MSG_F_COPY;
        vus[3].vtype = RD_KAFKA_VTYPE_VALUE;
        vus[3].u.mem.ptr = (void *)value;
        vus[3].u.mem.size = value_len;
        vus[4].vtype = RD_KAFKA_VTYPE_KEY;
        vus[4].u.mem.ptr = (void *)key;
        vus[4].u.mem.size = key_len;
        vus[5].vtype = RD_KAFKA_VTYPE_TIMESTAMP;
        vus[5].u.i64 = timestamp;
        vus[6].vtype = RD_KAFKA_VTYPE_OPAQUE;
        vus[6].u.ptr = opaque;
        if (headers) {
                vus[7].vtype = RD_KAFKA_VTYPE_HEADERS;
                vus[7].u.headers = headers;
                n = 8;
        }
        error = rd_kafka_produceva(rk, vus, n);
        if (!error)
                return RD_KAFKA_RESP_ERR_NO_ERROR;
        err = rd_kafka_error_code(error);
        rd_kafka_error_destroy(error);
        return err;
}

#endif
