/* Logging to stderr with a level, a timestamp and the function that speaks. */
#ifndef AGPU_LOG_H
#define AGPU_LOG_H

typedef enum { AGPU_LOG_ERROR, AGPU_LOG_WARN, AGPU_LOG_INFO, AGPU_LOG_DEBUG } agpu_log_level_t;

/* Messages above this level are dropped; -v raises it to DEBUG. */
void agpu_log_set_level(agpu_log_level_t level);
int agpu_log_enabled(agpu_log_level_t level);
void agpu_log_write(agpu_log_level_t level, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define agpu_error(...) agpu_log_write(AGPU_LOG_ERROR, __func__, __VA_ARGS__)
#define agpu_warn(...) agpu_log_write(AGPU_LOG_WARN, __func__, __VA_ARGS__)
#define agpu_info(...) agpu_log_write(AGPU_LOG_INFO, __func__, __VA_ARGS__)
#define agpu_debug(...)                                                                            \
    do {                                                                                           \
        if (agpu_log_enabled(AGPU_LOG_DEBUG))                                                      \
            agpu_log_write(AGPU_LOG_DEBUG, __func__, __VA_ARGS__);                                 \
    } while (0)

#endif
