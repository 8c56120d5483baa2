// os_log for DriverKit code on Linux. Apple's privacy and type annotations
// (`%{public}s`, `%{private}d`, `%{bool}d`, `%{errno}d`, ...) are accepted
// and stripped; the rest is printf. Messages go to stderr, or to the sink
// the host installs (dextlink_host_set_log_sink).
#ifndef DEXTLINK_OS_LOG_H
#define DEXTLINK_OS_LOG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dextlink_os_log_s* os_log_t;
typedef uint8_t os_log_type_t;

#define OS_LOG_TYPE_DEFAULT ((os_log_type_t)0x00)
#define OS_LOG_TYPE_INFO ((os_log_type_t)0x01)
#define OS_LOG_TYPE_DEBUG ((os_log_type_t)0x02)
#define OS_LOG_TYPE_ERROR ((os_log_type_t)0x10)
#define OS_LOG_TYPE_FAULT ((os_log_type_t)0x11)

#define OS_LOG_DEFAULT ((os_log_t)0)
#define OS_LOG_DISABLED ((os_log_t)0)

os_log_t os_log_create(const char* subsystem, const char* category);
void dextlink_os_log_with_type(os_log_t log, os_log_type_t type, const char* format, ...);

#ifdef __cplusplus
}
#endif

#define os_log_with_type(log, type, ...) dextlink_os_log_with_type((log), (type), __VA_ARGS__)
#define os_log(log, ...) os_log_with_type((log), OS_LOG_TYPE_DEFAULT, __VA_ARGS__)
#define os_log_info(log, ...) os_log_with_type((log), OS_LOG_TYPE_INFO, __VA_ARGS__)
#define os_log_debug(log, ...) os_log_with_type((log), OS_LOG_TYPE_DEBUG, __VA_ARGS__)
#define os_log_error(log, ...) os_log_with_type((log), OS_LOG_TYPE_ERROR, __VA_ARGS__)
#define os_log_fault(log, ...) os_log_with_type((log), OS_LOG_TYPE_FAULT, __VA_ARGS__)

#endif
